"""Every output path against ``serstream/schema/event.schema.json``, checked with an
independent validator (jsonschema) on what each sink actually wrote: stdout of
``replay --json`` with and without publishing, messages received over a real ZeroMQ
socket from ``replay`` and from ``run`` on the virtual microphone, stats messages of
both, and what ``listen --json`` prints. The schema names every key (unknown keys
fail), so a field added without the schema fails here."""

from __future__ import annotations

import json
import math
import signal
import time

import jsonschema
import pytest

from messages import event, mic_health, stats
from procs import (
    EXAMPLES,
    ROOT,
    assert_one_line_error,
    collect,
    free_endpoint,
    hearing,
    serstream,
    spawn,
)
from serstream.client import Subscriber
from serstream.events import (
    SCHEMA_VERSION,
    Stamper,
    encode,
)
from tiny_model import build

SCHEMA = json.loads((ROOT / "serstream" / "schema" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
CLIPS = sorted(EXAMPLES.glob("*.wav"))[:2]


def _valid(messages: list[dict]) -> list[dict]:
    assert messages, "nothing to validate"
    for m in messages:
        errors = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in VALIDATOR.iter_errors(m)]
        assert not errors, f"{m.get('type')} seq {m.get('seq')}: {errors}"
        assert m["schema"] == SCHEMA_VERSION
    return messages


def _lines(stdout: str) -> list[dict]:
    return [json.loads(x) for x in stdout.splitlines()]


def _kinds(messages: list[dict]) -> set[str]:
    return {m["type"] for m in messages}


def test_the_schema_is_valid_and_refuses_what_it_does_not_name():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    stamped = Stamper().stamp(stats()).payload
    _valid([dict(stamped)])
    for broken in ({**stamped, "undocumented": 1}, {k: v for k, v in stamped.items() if k != "seq"},
                   {**stamped, "session": ""}, {**stamped, "seq": -1}, {**stamped, "device": "maybe"}):
        assert not VALIDATOR.is_valid(broken), broken


def test_replay_json_without_publishing(tiny):
    r = serstream("replay", "--model", tiny, "--no-publish", "--json", "--stats", "--speed", "0", *CLIPS)
    assert r.returncode == 0, r.stderr
    out = _valid(_lines(r.stdout))
    assert _kinds(out) == {"emotion", "stats"}
    # one session, per-topic sequence numbers from 0, as a subscriber would see them
    assert len({m["session"] for m in out}) == 1
    for kind in ("emotion", "stats"):
        assert [m["seq"] for m in out if m["type"] == kind] == list(range(sum(m["type"] == kind for m in out)))
    assert all(m["device"] == "file" for m in out if m["type"] == "stats")


def test_replay_published_and_printed_are_the_same_messages(tiny):
    ep = free_endpoint()
    with Subscriber(ep, topics=("emotion", "stats")) as sub:
        proc = spawn("replay", "--model", tiny, "--bind", ep, "--json", "--stats", "--speed", "0",
                     "--stats-interval", "0.2", "--wait-subscriber", "30", *CLIPS)
        received = collect(sub, proc)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    for m in received:
        m.pop("topic")
    printed = _valid(_lines(out))
    assert _kinds(_valid(received)) == {"emotion", "stats"}
    # stamped once, before every sink: the socket and stdout got the very same messages
    assert received == printed


def test_run_on_the_virtual_microphone(virtual_mic, tiny):
    ep = free_endpoint()
    daemon = spawn("run", "--model", tiny, "--bind", ep, "--json", "--stats", "--stats-interval", "0.3")
    received: list[dict] = []
    try:
        with Subscriber(ep, topics=("emotion", "stats")) as sub:
            hearing(sub, seen=received)
            virtual_mic.play(EXAMPLES / "sad_savee_DC_sa01.wav").wait(timeout=60)
            deadline = time.monotonic() + 30
            while not any(m["topic"] == "emotion" and m["final"] for m in received):
                assert time.monotonic() < deadline, "no final event for the clip played into the microphone"
                if (ev := sub.recv(timeout=0.5)) is not None:
                    received.append(ev)
    finally:
        daemon.send_signal(signal.SIGINT)
        out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    for m in received:
        m.pop("topic")
    _valid(received)
    printed = {(m["type"], m["seq"]): m for m in _valid(_lines(out))}
    assert _kinds(list(printed.values())) == {"emotion", "stats"}
    for m in received:
        assert printed[m["type"], m["seq"]] == m
    mic_stats = [m for m in received if m["type"] == "stats"]
    assert all(m["device"] == "ok" and m["source"].startswith("mic:") for m in mic_stats)


def test_listen_json_prints_what_it_received(tiny):
    ep = free_endpoint()
    listener = spawn("listen", "--connect", ep, "--json", "--stats", "--count", "2", "--timeout", "60")
    r = serstream("replay", "--model", tiny, "--bind", ep, "--speed", "0", "--quiet", "--stats-interval", "0.1",
                  "--wait-subscriber", "30", *CLIPS)
    out, err = listener.communicate(timeout=90)
    assert r.returncode == 0, r.stderr
    assert listener.returncode == 0, err
    assert "emotion" in _kinds(_valid(_lines(out)))


def test_a_model_answering_nan_never_reaches_json(tmp_path):
    """NaN output is refused where the model answers (EmotionModel.classify), already at
    warm-up: one line, exit 2, nothing printed."""
    broken = build(tmp_path / "nan.onnx", fill=float("nan"))
    r = serstream("replay", "--model", broken, "--no-publish", "--json", "--stats", "--speed", "0", CLIPS[0])
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert_one_line_error(r.stderr, "finite")


def test_stamper_replaces_every_non_finite_number():
    message = Stamper().stamp(event(confidence=math.inf, probabilities={"sad": math.nan, "angry": 0.5}))
    assert message.payload["confidence"] is None and message.payload["probabilities"] == {"sad": None, "angry": 0.5}
    assert message.payload["non_finite"] == ["confidence", "probabilities.sad"]
    assert json.loads(message.data) == message.payload
    _valid([json.loads(message.data)])
    stamped = Stamper().stamp(stats(mic_health(), level=math.nan)).payload
    assert stamped["level_rms_dbfs"] is None and stamped["non_finite"] == ["level_rms_dbfs"]
    _valid([dict(stamped)])
    with pytest.raises(ValueError):
        encode({"x": math.nan})  # the last guard: never the non-standard NaN token


def test_readme_event_example_is_a_valid_message():
    """The README's sample event is a valid message."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```json\n", 1)[1].split("```", 1)[0]
    sample = json.loads(block)
    _valid([sample])



def test_a_received_nan_is_rejected_never_printed():
    """NaN/Infinity tokens and numbers beyond a float (1e999) are not JSON: whoever sent
    them, a subscriber skips the message (counted in ``rejected``) and ``listen --json``
    goes on printing only valid messages, instead of dying on them."""

    from serstream.publish import PublishConfig, Publisher

    ep = free_endpoint()
    pub = Publisher(PublishConfig(bind=ep))
    stamper = Stamper()
    good = stamper.stamp(event(0, confidence=0.5))
    bad = [good.data.replace(b'"confidence":0.5', token) for token in (b'"confidence":NaN',
                                                                       b'"confidence":-Infinity',
                                                                       b'"confidence":1e999')]
    assert all(b != good.data for b in bad)
    listener = spawn("listen", "--connect", ep, "--json", "--count", "1", "--timeout", "60")
    try:
        with Subscriber(ep) as sub:
            deadline = time.monotonic() + 60
            while pub.subscriptions < 2:  # the listener and this subscriber
                assert time.monotonic() < deadline, "the subscribers never subscribed"
                time.sleep(0.05)
            for data in bad:
                pub._outbox.send_multipart([b"emotion", data])  # straight onto the wire, unstamped
            pub.send(good)
            got = list(sub.events(timeout=5))
        out, err = listener.communicate(timeout=60)
    finally:
        pub.close()
    assert [e["seq"] for e in got] == [0] and sub.rejected == len(bad)
    assert listener.returncode == 0, err
    assert _valid(_lines(out)) == [json.loads(good.data)]

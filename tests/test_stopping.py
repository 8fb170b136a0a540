"""A stop signal ends any run at once, however far behind processing is and however slow
the model: exit 0, the segment in progress closed with a final from what was processed,
and the audio captured but not processed counted and reported (never silently lost).

Behaviour is asserted, not speed: how many results came after the signal (a backlog
worked off would be dozens), which were final, what was reported. The 2 s the product
promises is for bench/ and for the operator; here a bound appears only where a
classification could not even have ended in it."""

from __future__ import annotations

import json
import signal
import time

import numpy as np
import pytest
import soundfile as sf

from procs import EXAMPLES, Lines, free_endpoint, hearing, spawn
from serstream.client import Subscriber
from serstream.decode import load_audio
from tiny_model import build_heavy, build_slow

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """The example clips back to back: 28 s, speech nearly all the way."""
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    sf.write(path, np.concatenate([load_audio(p).samples for p in sorted(EXAMPLES.glob("*.wav"))]), 16000)
    return path


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    """~0.25 s a call or more: with a partial due every 100 ms of audio, always behind."""
    return build_slow(tmp_path_factory.mktemp("slow") / "slow.onnx", seconds=0.3)


def _json(lines: list[str]) -> list[dict]:
    return [json.loads(x) for x in lines if x.startswith("{")]


def _wait_behind(out: Lines, seconds: float, timeout: float = 120) -> None:
    """Until a stats line says at least ``seconds`` of audio wait unprocessed."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        lines = list(out.lines)
        for m in _json(lines[seen:]):
            if m["type"] == "stats" and m["buffered_s"] >= seconds:
                return
        seen = len(lines)
        time.sleep(0.05)
    raise AssertionError(f"processing never fell {seconds} s behind:\n{''.join(out.lines[-5:])}")


def _check_stopped(emotion: list[dict], after: list[dict], last_stats: dict, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert emotion, "nothing was classified before the stop"
    # every segment that was reported at all ends with its final
    partial_segments = {e["segment"] for e in emotion if not e["final"]}
    final_segments = {e["segment"] for e in emotion if e["final"]}
    assert partial_segments <= final_segments, (partial_segments, final_segments)
    assert emotion[-1]["final"]
    # at most the result in progress and the closing final came after the signal (a
    # partial every 100 ms over the seconds of backlog would be dozens)
    assert len(after) <= 3, [(e["segment"], e["final"]) for e in after]
    assert last_stats["unprocessed_s"] > 0.5, last_stats
    assert "not processed" in stderr and "left unprocessed by the stop" in stderr, stderr


@pytest.mark.parametrize("sig, speed", [(s, 0) for s in SIGNALS] + [(signal.SIGTERM, 1)],
                         ids=lambda v: getattr(v, "name", f"speed{v}"))
def test_a_stop_signal_ends_a_replay_however_far_behind(speech, slow, sig, speed):
    proc = spawn("replay", "--model", slow, "--no-publish", "--json", "--stats", "--stats-interval", "0.2",
                 "--speed", speed, "--partial-interval-ms", "100", speech)
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    _wait_behind(out, 1.0)
    signalled = time.monotonic()
    proc.send_signal(sig)
    proc.wait(timeout=60)
    stdout, stderr = out.text(), err.text()
    assert proc.returncode == 0, stderr
    assert f"{sig.name} received" in stderr
    messages = _json(stdout.splitlines())
    after = [m for m in _json(out.since(signalled)) if m["type"] == "emotion"]
    _check_stopped([m for m in messages if m["type"] == "emotion"], after,
                   [m for m in messages if m["type"] == "stats"][-1], stderr)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_ends_a_live_run_however_far_behind(virtual_mic, speech, slow, sig):
    ep = free_endpoint()
    daemon = spawn("run", "--model", slow, "--bind", ep, "--stats-interval", "0.2", "--partial-interval-ms", "100")
    err = Lines(daemon.stderr)
    got: list[dict] = []
    with Subscriber(ep, topics=("emotion", "stats")) as sub:
        hearing(sub, seen=got)  # the microphone delivers: a clip played now is heard
        virtual_mic.play(speech)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            m = sub.recv(timeout=0.5)
            if m is not None:
                got.append(m)
                if m["topic"] == "stats" and m["buffered_s"] >= 1.0 and m["in_speech"]:
                    break
        else:
            raise AssertionError("processing never fell behind")
        signalled = len(got)
        daemon.send_signal(sig)
        daemon.wait(timeout=60)
        got += list(sub.events(timeout=2))
    stderr = err.text()
    assert daemon.returncode == 0, stderr
    emotion = [m for m in got if m["topic"] == "emotion"]
    after = [m for m in got[signalled:] if m["topic"] == "emotion"]
    _check_stopped(emotion, after, [m for m in got if m["topic"] == "stats"][-1], stderr)


def test_a_stop_does_not_wait_for_a_model_slower_than_the_stop(speech, tmp_path):
    """A classification of a 20 s segment takes this model minutes: the stop cuts the
    partial in progress at once, gives the final its share of the 2 s, then cuts that
    too, says so, and exits 0."""
    heavy = build_heavy(tmp_path / "heavy.onnx")
    proc = spawn("replay", "--model", heavy, "--no-publish", "--json", "--stats", "--speed", "0",
                 "--partial-interval-ms", "20000", "--max-speech-ms", "60000", "--hangover-ms", "5000", speech)
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    assert err.wait_for("model heavy-test", 120), err.text()
    time.sleep(2)  # the replay reaches 20 s of speech in a blink; its partial is being computed
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    took = time.monotonic() - t0
    stdout, stderr = out.text(), err.text()
    assert proc.returncode == 0, stderr
    assert "no final: the model was still working when the stop's time ran out" in stderr, stderr
    messages = _json(stdout.splitlines())
    assert not [m for m in messages if m["type"] == "emotion"]  # none came: neither partial nor final
    last = [m for m in messages if m["type"] == "stats"][-1]
    assert last["errors"] == 1 and last["unprocessed_s"] > 0, last
    # one call alone takes minutes on this model; load cannot stretch a 2 s stop to 30
    assert took < 30, f"exit took {took:.1f} s"


def test_a_second_signal_exits_at_once(speech, tmp_path):
    """While the first signal is being honoured (a final being computed), a second one
    exits at once, with 130."""
    heavy = build_heavy(tmp_path / "heavy.onnx")
    proc = spawn("replay", "--model", heavy, "--no-publish", "--quiet", "--speed", "0",
                 "--partial-interval-ms", "0", "--max-speech-ms", "60000", "--hangover-ms", "5000", speech)
    err = Lines(proc.stderr)
    assert err.wait_for("model heavy-test", 120), err.text()
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    assert err.wait_for("SIGINT received", 60), err.text()  # the final of 20+ s of speech: minutes
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    stderr = err.text()
    assert proc.returncode == 130 and "second signal, exiting now" in stderr, stderr


def test_a_stop_ends_a_replay_with_worker_processes_too(speech, slow, tmp_path):
    """replay --jobs 2: the parent starts no other file and has each worker end its own
    at once (each of these files would take minutes), exit 0."""
    summary = tmp_path / "files.csv"
    proc = spawn("replay", "--model", slow, "--no-publish", "--json", "--speed", "0", "--jobs", "2",
                 "--partial-interval-ms", "100", "--summary", summary, speech, speech, speech, speech)
    err = Lines(proc.stderr)
    Lines(proc.stdout)  # read, so the results printed at the stop (tens of KB) never fill the pipe
    assert err.wait_for("model slow-test", 120), err.text()
    time.sleep(15)  # the workers start (each loads its own model) and are deep in their first files
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    took = time.monotonic() - t0
    stderr = err.text()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "unexpected" not in stderr, stderr
    rows = summary.read_text().splitlines()[1:]
    # the files begun (and any already handed to a worker), each stopped; none scored to its end
    assert rows and all(r.endswith("stopped before the end of the file") for r in rows), rows
    assert any(int(r.split(",")[-4]) > 0 for r in rows), rows  # segments closed with their finals
    assert took < 30, f"exit took {took:.1f} s"  # a file alone is minutes of work for this model

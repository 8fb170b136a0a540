"""Replay -> ZeroMQ -> serstream.client, with real processes, sockets and ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from procs import EXAMPLES, collect, free_endpoint, serstream, spawn
from serstream.client import Subscriber
from serstream.decode import load_audio
from serstream.model import EmotionModel
from serstream.vad import VadConfig, segments
from tiny_model import build

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "serstream/schema/event.schema.json").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("model") / "tiny.onnx")


def _joined(tmp_path: Path, clips: list[Path], gap_s: float = 1.5) -> tuple[Path, list[tuple[float, float]]]:
    """A file with known speech: clips separated by silence; returns clip spans."""
    sr = 16000
    parts, spans, t = [np.zeros(int(sr * gap_s), np.float32)], [], gap_s
    for c in clips:
        y = load_audio(c).samples
        parts += [y, np.zeros(int(sr * gap_s), np.float32)]
        spans.append((t, t + len(y) / sr))
        t += len(y) / sr + gap_s
    path = tmp_path / "joined.wav"
    sf.write(path, np.concatenate(parts), sr, subtype="PCM_16")
    return path, spans


def test_replay_publishes_expected_events_in_order(tmp_path, tiny):
    clips = sorted(EXAMPLES.glob("*.wav"))[:3]
    joined, spans = _joined(tmp_path, clips)
    files = [joined, *clips]
    ep = free_endpoint()
    with Subscriber(ep, topics=("emotion", "stats")) as sub:
        proc = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "0", "--quiet",
                     "--wait-subscriber", "20", *files)
        received = collect(sub, proc)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    emotions = [e for e in received if e["topic"] == "emotion"]
    stats = [e for e in received if e["topic"] == "stats"]
    assert stats, "no stats message"
    # consecutive per-topic sequence numbers from 0: nothing lost, nothing reordered
    assert [e["seq"] for e in emotions] == list(range(len(emotions)))
    assert [e["seq"] for e in stats] == list(range(len(stats)))
    assert sub.gaps == 0 and sub.rejected == 0
    for e in received:
        e.pop("topic")
        jsonschema.validate(e, SCHEMA)

    model = EmotionModel(tiny)
    vad = model.meta.vad or VadConfig()
    finals = [e for e in emotions if e["final"]]
    for f in files:
        expect = segments(load_audio(f).samples, 16000, vad)
        got = [e for e in finals if e["source"] == str(f)]
        assert len(got) == len(expect) > 0, f
        for e, s in zip(got, expect, strict=True):
            assert e["start"] == pytest.approx(s.start / 16000, abs=1e-3)
            assert e["end"] == pytest.approx(s.end / 16000, abs=1e-3)
            # the published label is what the model says about exactly that audio
            probs = model.classify(s.audio).probabilities
            assert e["label"] == model.labels[int(np.argmax(probs))]
            assert e["confidence"] == pytest.approx(float(probs.max()), abs=1e-4)
            assert sum(e["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    # the joined file's segments sit on its clips
    jf = [e for e in finals if e["source"] == str(joined)]
    assert len(jf) == len(spans)
    for e, (a, b) in zip(jf, spans, strict=True):
        assert a - 0.35 <= e["start"] and e["end"] <= b + 0.5
    # each segment: partials (if any) come before exactly one final
    for src in {e["source"] for e in emotions}:
        evs = [e for e in emotions if e["source"] == src]
        for idx in {e["segment"] for e in evs}:
            seg = [e for e in evs if e["segment"] == idx]
            assert [e["final"] for e in seg].count(True) == 1 and seg[-1]["final"]


def test_replay_json_to_stdout_without_socket(tiny):
    clip = sorted(EXAMPLES.glob("*.wav"))[0]
    r = serstream("replay", "--model", tiny, "--no-publish", "--json", "--speed", "0", clip)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines and lines[-1]["final"] and lines[-1]["source"] == str(clip)
    assert all(x["label"] in ("neutral", "happy", "sad", "angry") for x in lines)


def test_replay_real_time_pace(tiny, tmp_path):
    """speed=1 takes about as long as the audio; speed=4 about a quarter of it."""
    import time

    y = load_audio(sorted(EXAMPLES.glob("*.wav"))[0]).samples[: 16000 * 2]
    path = tmp_path / "two_seconds.wav"
    sf.write(path, y, 16000)
    times = {}
    for speed in ("1", "4"):
        t0 = time.monotonic()
        r = serstream("replay", "--model", tiny, "--no-publish", "--quiet", "--speed", speed, path)
        times[speed] = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
    # process start-up is included in both; the difference is the pacing
    assert times["1"] - times["4"] == pytest.approx(2.0 - 0.5, abs=0.6)


def test_listen_prints_events_from_replay(tiny):
    ep = free_endpoint()
    listener = spawn("listen", "--connect", ep, "--json", "--count", "2", "--timeout", "40")
    clips = sorted(EXAMPLES.glob("*.wav"))[:2]
    r = serstream("replay", "--model", tiny, "--bind", ep, "--speed", "0", "--quiet",
                  "--wait-subscriber", "20", *clips)
    out, err = listener.communicate(timeout=60)
    assert r.returncode == 0, r.stderr
    assert listener.returncode == 0, err
    events = [json.loads(x) for x in out.splitlines()]
    assert len(events) == 2 and all(e["type"] == "emotion" for e in events)

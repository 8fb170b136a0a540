"""Replay -> ZeroMQ -> serstream.client, with real processes, sockets and ONNX Runtime."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from procs import EXAMPLES, collect, free_endpoint, serstream, spawn
from serstream.client import Subscriber
from serstream.decode import load_audio
from serstream.model import EmotionModel
from serstream.replay import FileSource, ReplayConfig
from serstream.vad import VadConfig, segments

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "serstream/schema/event.schema.json").read_text())



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


@pytest.mark.parametrize("speed", [1.0, 4.0])
def test_paced_replay_never_runs_ahead_of_its_speed(speed):
    """Each sample enters the ring no earlier than its time in the file divided by the
    speed. That is the bound pacing guarantees; a busy machine can only delay samples,
    never bring them forward, so the check holds however loaded the machine is."""
    sr = 16000
    source = FileSource(EXAMPLES / "sad_savee_DC_sa01.wav", sr=sr, config=ReplayConfig(speed=speed, ring_seconds=8))
    total = load_audio(EXAMPLES / "sad_savee_DC_sa01.wav").samples.size
    assert total < source.ring.capacity  # all of it fits: no consumer needed
    t0 = time.monotonic()
    source.start()
    deadline = t0 + 120  # generous: only a hang gets here
    while not source.finished():
        assert time.monotonic() < deadline, "replay never finished"
        time.sleep(0.02)
    source.close()
    assert source.ring.frames_written == total and source.ring.dropped == 0
    samples = np.arange(0, total, 80)
    arrived = np.array([source.ring.arrival_time(int(i)) for i in samples])
    early = arrived - (t0 + (samples + 1) / (sr * speed))
    assert early.min() >= -1e-3, f"sample {samples[early.argmin()]} arrived {-early.min() * 1000:.1f} ms early"
    # in microphone-sized writes, not in one go at the end
    assert len(set(arrived.tolist())) >= total // (sr * ReplayConfig().block_ms // 1000)
    if speed > 1:
        # and faster than real time: the pacing is not just slow. Sleeping is all this
        # replay does, so its lateness is scheduling delay (ms), far from this margin.
        assert arrived[-1] - t0 < total / sr, "a 4x replay took as long as the audio"


def test_replay_command_paces_by_the_daemons_own_clock(tmp_path):
    """``replay --speed 1``: an event's last sample entered the pipeline (``wall_end``,
    stamped by the daemon) no earlier than its stream time after the process started."""
    y = load_audio(EXAMPLES / "sad_savee_DC_sa01.wav").samples
    path = tmp_path / "clip.wav"
    sf.write(path, y, 16000)
    started = time.time()
    r = serstream("replay", "--no-publish", "--json", "--speed", "1", "--partial-interval-ms", "500", path)
    assert r.returncode == 0, r.stderr
    events = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(events) >= 3
    for e in events:
        # a partial's end is where the stream was when it was sent; the final's is cut
        # back to the last voiced frame, so the deciding sample bounds it too
        assert e["wall_end"] >= started + e["end"] - 0.01, e


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


def test_asking_for_stats_changes_nothing(tiny):
    """Pipeline.stats() is a reading: asked for twice in the middle of a replay it gives
    the same input level twice, and the stats message sent later still covers the audio
    since the previous one. Only publishing a stats message starts the level meter over."""
    from serstream.pipeline import Pipeline, PipelineConfig

    model = EmotionModel(tiny)
    readings: list[tuple] = []
    sent: list = []

    def sink(message):
        sent.append(message)
        if message.topic == "emotion" and not readings:  # mid-replay, audio since the last stats
            readings.extend(pipeline.stats() for _ in range(2))

    # no stats message before the end of the file: the level covers the whole clip
    pipeline = Pipeline(model, None, PipelineConfig(stats_interval=3600.0), sinks=[sink])
    clip = EXAMPLES / "sad_savee_DC_sa01.wav"
    pipeline.run(FileSource(clip, sr=model.sample_rate, config=ReplayConfig(speed=0)), threading.Event())
    first, second = readings
    assert first.level_rms_dbfs is not None and first.level_peak_dbfs is not None
    assert (second.level_rms_dbfs, second.level_peak_dbfs) == (first.level_rms_dbfs, first.level_peak_dbfs)
    (final_stats,) = [m.payload for m in sent if m.topic == "stats"]
    assert final_stats["level_rms_dbfs"] is not None
    assert final_stats["level_peak_dbfs"] >= first.level_peak_dbfs  # the peak of the whole clip
    assert pipeline.stats().level_rms_dbfs is None  # publishing it started the meter over

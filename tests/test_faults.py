"""Faults the daemon must survive, each injected for real: the PulseAudio microphone
unloaded under it, a model too slow for the stream, subscribers that vanish, signals,
and an hour of audio."""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import threading
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from procs import EXAMPLES, collect, free_endpoint, hearing, spawn
from serstream.client import Subscriber
from serstream.decode import load_audio
from serstream.vad import segments
from tiny_model import build_slow


def _next(sub: Subscriber, pred, timeout: float) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = sub.recv(timeout=0.5)
        if ev is not None and pred(ev):
            return ev
    return None


def _is_stats(ev):
    return ev["topic"] == "stats"


def _pactl(*args: str) -> str:
    return subprocess.run(["pactl", *args], capture_output=True, text=True, check=True).stdout


def _vmic_module() -> str:
    for line in _pactl("list", "short", "modules").splitlines():
        if "module-null-sink" in line and "sink_name=vmic" in line:
            return line.split("\t")[0]
    raise AssertionError("virtual microphone sink not loaded")


def _default_source() -> str:
    for line in _pactl("info").splitlines():
        if line.startswith("Default Source:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("`pactl info` names no default source")


def _plug_in_vmic(default_source: str) -> None:
    """Load the vmic null sink if it is gone, and make ``default_source`` the default."""
    sinks = [ln.split("\t")[1] for ln in _pactl("list", "short", "sinks").splitlines() if "\t" in ln]
    if "vmic" not in sinks:
        _pactl("load-module", "module-null-sink", "sink_name=vmic")
    _pactl("set-default-source", default_source)


def test_microphone_pulled_out_and_back(virtual_mic, tiny):
    found = _default_source()
    ep = free_endpoint()
    daemon = spawn("run", "--model", tiny, "--bind", ep, "--stats-interval", "0.3")
    try:
        with Subscriber(ep, topics=("emotion", "stats")) as sub:
            assert _next(sub, lambda e: _is_stats(e) and e["device"] == "ok", 60), "daemon never ready"
            _pactl("unload-module", _vmic_module())  # pull the microphone out
            lost = _next(sub, lambda e: _is_stats(e) and e["device"] == "lost", 30)
            assert lost, "daemon did not notice the device went away"
            # still serving: stats keep coming while the device is gone
            again = _next(sub, lambda e: _is_stats(e) and e["seq"] > lost["seq"], 15)
            assert again and again["device"] == "lost"
            assert again["lost_for_s"] > lost["lost_for_s"] >= 0
            _plug_in_vmic("vmic.monitor")  # plug it back in
            back = _next(sub, lambda e: _is_stats(e) and e["device"] == "ok" and e["reconnects"] >= 1, 60)
            assert back, "capture did not resume when the device came back"
            assert back["lost_for_s"] is None
            hearing(sub, after=back["frames_captured"])  # reopened, and delivering again
            virtual_mic.play(EXAMPLES / "sad_savee_DC_sa01.wav").wait(timeout=60)
            final = _next(sub, lambda e: e["topic"] == "emotion" and e["final"], 30)
            assert final, "no event after the device came back"
        assert daemon.poll() is None, "daemon exited"
    finally:
        # stop what the test started first; then put PulseAudio back as it was found
        try:
            daemon.send_signal(signal.SIGINT)
            _, err = daemon.communicate(timeout=30)
        finally:
            _plug_in_vmic(found)
    assert daemon.returncode == 0, err
    assert "Traceback" not in err


def test_stalled_processing_overflows_are_counted_and_it_catches_up(virtual_mic, tmp_path):
    """A model ~1 s per call with partials every 300 ms cannot keep up with speech:
    the ring overflows (counted), capture goes on, and once speech stops it catches up."""
    slow = build_slow(tmp_path / "slow.onnx", seconds=1.0)
    y = np.concatenate([load_audio(p).samples for p in sorted(EXAMPLES.glob("*.wav"))])[: 16000 * 14]
    clip = tmp_path / "speech.wav"
    sf.write(clip, y, 16000)
    ep = free_endpoint()
    daemon = spawn("run", "--model", slow, "--bind", ep, "--stats-interval", "0.5",
                   "--partial-interval-ms", "300", "--hangover-ms", "1500", "--max-speech-ms", "30000")
    try:
        with Subscriber(ep, topics=("emotion", "stats")) as sub:
            first = _next(sub, _is_stats, 60)
            assert first, "daemon never ready"
            virtual_mic.play(clip)
            over = _next(sub, lambda e: _is_stats(e) and e["overflows"] > 0, 40)
            assert over, "no overflow counted although processing could not keep up"
            caught_up = _next(sub, lambda e: _is_stats(e) and e["buffered_s"] < 0.2
                              and e["seq"] > over["seq"] and not e["in_speech"], 90)
            assert caught_up, "pipeline never caught up after the stall"
            assert caught_up["frames_captured"] > over["frames_captured"]  # capture went on
            assert caught_up["device"] == "ok"
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.communicate(timeout=60)
    assert daemon.returncode == 0


def test_reconnecting_subscriber_sees_the_gap(tiny, tmp_path):
    clips = sorted(EXAMPLES.glob("*.wav"))
    ep = free_endpoint()
    with Subscriber(ep, topics=("emotion",)) as sub:
        proc = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "4", "--quiet",
                     "--wait-subscriber", "20", *clips)
        first = sub.recv(timeout=30)
        assert first is not None and first["seq"] == 0
        sub.reconnect(away=3.0)  # what is published meanwhile is lost to us
        rest = collect(sub, proc)
        proc.communicate(timeout=60)
    assert rest, "nothing received after reconnecting"
    assert rest[0]["seq"] > 1, "expected to resume at the current sequence number"
    assert sub.gaps >= 1 and sub.lost >= rest[0]["seq"] - 1
    assert [e["seq"] for e in rest] == list(range(rest[0]["seq"], rest[0]["seq"] + len(rest)))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_exits_zero_and_publishes_last_segment(tiny, tmp_path, sig):
    y = np.concatenate([load_audio(p).samples for p in sorted(EXAMPLES.glob("*.wav"))])
    long = tmp_path / "long.wav"
    sf.write(long, y, 16000)
    ep = free_endpoint()
    with Subscriber(ep, topics=("emotion", "stats")) as sub:
        proc = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "1", "--quiet",
                     "--wait-subscriber", "20", "--partial-interval-ms", "0",
                     "--stats-interval", "0.1", long)
        # a moment when someone is talking, after at least one segment is done
        assert _next(sub, lambda e: e["topic"] == "emotion" and e["final"], 30)
        # mid-speech, and long enough into it to be a segment (min_speech_ms = 250)
        talking, since = None, None
        deadline = time.monotonic() + 30
        while talking is None and time.monotonic() < deadline:
            ev = _next(sub, _is_stats, 5)
            if ev is None or not ev["in_speech"]:
                since = None
            elif since is None:
                since = ev["stream_s"]
            elif ev["stream_s"] - since >= 0.6:
                talking = ev
        assert talking, "never caught the stream mid-speech"
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=10)
        took = time.monotonic() - t0
        last = [e for e in sub.events(timeout=1.5) if e["topic"] == "emotion"]
    assert proc.returncode == 0, proc.stderr.read()
    # the 2 s promise is measured in bench/ (stopping); a test on a shared machine bounds
    # only what no load can stretch: the rest of this file at speed 1 is far longer
    assert took < 10, f"exit took {took:.2f} s"
    assert last and last[-1]["final"], "the segment in progress was not published"
    assert last[-1]["end"] >= talking["stream_s"] - 0.1


@pytest.mark.slow
def test_soak_one_hour_of_audio(tiny, tmp_path):
    """An hour of audio at full speed through the real process and socket: one final per
    segment of every pass, no event lost or reordered. (Memory is measured where load
    cannot move it: test_memory_does_not_grow_with_events; the RSS figure over an hour
    is a benchmark, in bench/.)"""
    sr = 16000
    gap = np.zeros(sr, np.float32)
    parts = []
    for p in sorted(EXAMPLES.glob("*.wav")):
        parts += [load_audio(p).samples, gap]
    unit = np.concatenate(parts)
    repeats = int(np.ceil(3600 * sr / unit.size))
    path = tmp_path / "unit.flac"
    sf.write(path, unit, sr)
    per_file = len(segments(unit, sr))
    ep = free_endpoint()
    # queues big enough that a subscriber slowed down by a busy machine loses nothing
    with Subscriber(ep, topics=("emotion",), hwm=1_000_000) as sub:
        proc = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "0", "--quiet",
                     "--hwm", "1000000", "--wait-subscriber", "30", *([path] * repeats))
        events = collect(sub, proc, limit=1800)
        proc.communicate(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert unit.size * repeats / sr >= 3600
    assert [e["seq"] for e in events] == list(range(len(events))), "lost or reordered events"
    finals = [e for e in events if e["final"]]
    assert len(finals) == per_file * repeats
    per_index = np.bincount([e["segment"] for e in finals], minlength=per_file)
    assert per_index.tolist() == [repeats] * per_file  # each segment of each pass: one final


def _heap_growth(model, path: Path, sinks: list, warm: int, passes: int) -> tuple[int, int]:
    """Python heap growth (tracemalloc, bytes) over ``passes`` replays of ``path`` after
    ``warm`` ones, through the daemon's own Pipeline and a real ZeroMQ publisher; and the
    events sent meanwhile."""
    from serstream.pipeline import Pipeline, PipelineConfig
    from serstream.publish import PublishConfig, Publisher
    from serstream.replay import FileSource, ReplayConfig

    publisher = Publisher(PublishConfig(bind=free_endpoint()))
    # partials every 100 ms: many events per pass, so a per-event cost adds up quickly
    vad = replace(model.meta.vad, partial_interval_ms=100)
    pipeline = Pipeline(model, publisher, PipelineConfig(vad=vad, stats_interval=0.05), sinks)
    stop = threading.Event()
    try:
        for i in range(warm + passes):
            if i == warm:
                gc.collect()
                before, events = tracemalloc.get_traced_memory()[0], pipeline.counters.events
            pipeline.run(FileSource(path, sr=model.sample_rate, config=ReplayConfig(speed=0)), stop)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, pipeline.counters.events - events
    finally:
        publisher.close()


def test_memory_does_not_grow_with_events(tiny, tmp_path):
    """What cannot grow: once warm, more audio and more events leave the daemon's heap
    where it was (no per-event or per-file state kept). tracemalloc counts allocations,
    not time, so a busy machine cannot move the figure; the same measurement with a sink
    that keeps every message shows the bound is one a real leak would cross."""
    from serstream.model import EmotionModel

    parts = []
    for p in sorted(EXAMPLES.glob("*.wav"))[:2]:
        parts += [load_audio(p).samples, np.zeros(16000, np.float32)]
    path = tmp_path / "unit.wav"
    sf.write(path, np.concatenate(parts), 16000)
    model = EmotionModel(tiny)
    model.warmup()
    bound = 64 * 1024
    tracemalloc.start()
    try:
        growth, events = _heap_growth(model, path, [], warm=5, passes=15)
        kept: list = []
        leaky, leaky_events = _heap_growth(model, path, [kept.append], warm=5, passes=15)
    finally:
        tracemalloc.stop()
    assert events >= 500 and leaky_events == events
    assert growth < bound, f"heap grew {growth / 1024:.1f} KiB over {events} events"
    assert leaky > 4 * bound, f"a sink keeping {leaky_events} messages grew the heap by only {leaky / 1024:.1f} KiB"
    print(json.dumps({"events": events, "growth_bytes": growth, "leaky_growth_bytes": leaky}))

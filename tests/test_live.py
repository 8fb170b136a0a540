"""Live capture: the daemon reads the PulseAudio virtual microphone through PortAudio
(the same sounddevice code as a physical microphone) while a clip is played into it."""

from __future__ import annotations

import signal
import time

import pytest

from procs import EXAMPLES, free_endpoint, spawn
from serstream.client import Subscriber
from serstream.decode import load_audio
from tiny_model import build


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build(tmp_path_factory.mktemp("m") / "tiny.onnx")


def _wait_stats(sub: Subscriber, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = sub.recv(timeout=1)
        if ev and ev["topic"] == "stats":
            return ev
    raise AssertionError("daemon sent no stats: not running?")


def _finals(sub: Subscriber, n: int, timeout: float) -> tuple[list[dict], list[dict]]:
    finals, stats = [], []
    deadline = time.monotonic() + timeout
    while len(finals) < n and time.monotonic() < deadline:
        ev = sub.recv(timeout=0.5)
        if ev is None:
            continue
        if ev["topic"] == "stats":
            stats.append(ev)
        elif ev["final"]:
            finals.append(ev)
    return finals, stats


def test_live_capture_publishes_final_event(virtual_mic, tiny):
    clip = EXAMPLES / "sad_savee_DC_sa01.wav"
    duration = load_audio(clip).duration
    ep = free_endpoint()
    daemon = spawn("run", "--model", tiny, "--bind", ep, "--stats-interval", "0.5")
    try:
        with Subscriber(ep, topics=("emotion", "stats")) as sub:
            first = _wait_stats(sub)
            assert first["source"].startswith("mic:")
            played_at = time.time()
            virtual_mic.play(clip).wait(timeout=30)
            finals, stats = _finals(sub, 1, timeout=15)
        assert len(finals) == 1, "no final event for the clip played into the microphone"
        ev = finals[0]
        # the segment covers the speech of the clip (VAD trims leading/trailing silence)
        assert 0.5 * duration <= ev["end"] - ev["start"] <= duration + 0.6
        assert played_at - 1 <= ev["wall_start"] <= played_at + duration
        assert ev["processing_ms"] < 1000
        assert stats and stats[-1]["frames_captured"] > first["frames_captured"]
        assert stats[-1]["device"] == "ok" and stats[-1]["level_peak_dbfs"] is not None
    finally:
        daemon.send_signal(signal.SIGINT)
        out, err = daemon.communicate(timeout=10)
    assert daemon.returncode == 0, err
    assert "Traceback" not in err


def test_sigint_finishes_segment_in_progress(virtual_mic, tiny, tmp_path):
    """Ctrl-C while someone is talking: the segment is still published as final,
    and the process exits 0 within 2 s."""
    import numpy as np
    import soundfile as sf

    y = np.concatenate([load_audio(p).samples for p in sorted(EXAMPLES.glob("*ravdess*.wav"))])
    long_clip = tmp_path / "long.wav"
    sf.write(long_clip, y, 16000)
    ep = free_endpoint()
    daemon = spawn("run", "--model", tiny, "--bind", ep, "--stats-interval", "0.5",
                   "--partial-interval-ms", "0", "--hangover-ms", "2000")
    with Subscriber(ep, topics=("emotion", "stats")) as sub:
        _wait_stats(sub)
        player = virtual_mic.play(long_clip)
        time.sleep(3.0)  # mid-speech (the first clip's speech starts ~0.8 s in)
        t0 = time.monotonic()
        daemon.send_signal(signal.SIGINT)
        daemon.wait(timeout=10)
        exit_s = time.monotonic() - t0
        player.kill()
        finals, _ = _finals(sub, 1, timeout=3)
    assert daemon.returncode == 0, daemon.stderr.read()
    assert exit_s <= 2.0, f"took {exit_s:.2f} s to exit"
    assert finals, "the segment in progress was not published on SIGINT"


def test_second_signal_exits_at_once(tiny):
    """A second Ctrl-C must not wait for anything."""
    ep = free_endpoint()
    daemon = spawn("replay", "--model", tiny, "--bind", ep, "--wait-subscriber", "60",
                   EXAMPLES / "sad_savee_DC_sa01.wav")
    time.sleep(0.5)  # still loading the model: the first signal cannot finish at once
    daemon.send_signal(signal.SIGINT)
    time.sleep(0.2)
    t0 = time.monotonic()
    daemon.send_signal(signal.SIGINT)
    daemon.wait(timeout=3)
    assert time.monotonic() - t0 < 1.0
    assert daemon.returncode in (0, 130), daemon.stderr.read()


def test_device_at_another_rate_is_resampled(virtual_mic, tiny):
    """A device running at 44.1 kHz: captured at its rate, resampled (soxr) before the VAD."""
    clip = EXAMPLES / "fear_tess_OAF_back_fear.wav"
    ep = free_endpoint()
    daemon = spawn("run", "--model", tiny, "--bind", ep, "--stats-interval", "0.5", "--samplerate", "44100")
    try:
        with Subscriber(ep, topics=("emotion", "stats")) as sub:
            first = _wait_stats(sub)
            assert first["device_samplerate"] == 44100
            virtual_mic.play(clip).wait(timeout=30)
            finals, stats = _finals(sub, 1, timeout=15)
        assert len(finals) == 1
        # stream time is counted at the model's 16 kHz whatever the device rate
        assert 0.8 <= finals[0]["end"] - finals[0]["start"] <= load_audio(clip).duration + 0.6
        assert stats[-1]["frames_captured"] >= 44100 * 1.5
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.communicate(timeout=10)
    assert daemon.returncode == 0

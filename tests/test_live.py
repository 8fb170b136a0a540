"""Live capture: the daemon reads the PulseAudio virtual microphone through PortAudio
(the same sounddevice code as a physical microphone) while a clip is played into it."""

from __future__ import annotations

import signal
import time

import numpy as np
import soundfile as sf

from procs import EXAMPLES, free_endpoint, hearing, spawn
from serstream.client import Subscriber
from serstream.decode import load_audio


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
            first = hearing(sub)
            assert first["source"].startswith("mic:")
            played_at = time.time()
            virtual_mic.play(clip).wait(timeout=60)
            finals, stats = _finals(sub, 1, timeout=30)
            received_at = time.time()
        assert len(finals) == 1, "no final event for the clip played into the microphone"
        ev = finals[0]
        # the segment covers the speech of the clip (VAD trims leading/trailing silence)
        assert 0.5 * duration <= ev["end"] - ev["start"] <= duration + 0.6
        # its samples were captured after the clip began (less the pad of silence kept
        # before speech), and before the event about them arrived: bounds load cannot break
        assert played_at - 1 <= ev["wall_start"] < ev["wall_end"] <= received_at
        # processing covers the features and the inference (how long it takes is for bench/)
        assert ev["processing_ms"] >= ev["features_ms"] + ev["inference_ms"] - 0.01
        assert stats and stats[-1]["frames_captured"] > first["frames_captured"]
        assert stats[-1]["callbacks"] > first["callbacks"] and stats[-1]["overflows"] == 0
        assert stats[-1]["device"] == "ok" and stats[-1]["level_peak_dbfs"] is not None
    finally:
        daemon.send_signal(signal.SIGINT)
        out, err = daemon.communicate(timeout=10)
    assert daemon.returncode == 0, err
    assert "Traceback" not in err


def test_sigint_finishes_segment_in_progress(virtual_mic, tiny, tmp_path):
    """Ctrl-C while someone is talking: the segment is still published as final,
    and the process exits 0 promptly (the 2 s figure is measured in bench/)."""
    y = np.concatenate([load_audio(p).samples for p in sorted(EXAMPLES.glob("*ravdess*.wav"))])
    long_clip = tmp_path / "long.wav"
    sf.write(long_clip, y, 16000)
    ep = free_endpoint()
    daemon = spawn("run", "--model", tiny, "--bind", ep, "--stats-interval", "0.5",
                   "--partial-interval-ms", "0", "--hangover-ms", "2000")
    with Subscriber(ep, topics=("emotion", "stats")) as sub:
        hearing(sub)
        player = virtual_mic.play(long_clip)
        # mid-speech, as the daemon itself reports it, and long enough into it (by its
        # stream clock) to be a segment rather than a click (min_speech_ms = 250)
        deadline, since = time.monotonic() + 60, None
        while True:
            assert time.monotonic() < deadline, "the daemon never heard speech"
            ev = _wait_stats(sub, timeout=60)
            if not ev["in_speech"]:
                since = None
            elif since is None:
                since = ev["stream_s"]
            elif ev["stream_s"] - since >= 0.6:
                break
        t0 = time.monotonic()
        daemon.send_signal(signal.SIGINT)
        daemon.wait(timeout=10)
        exit_s = time.monotonic() - t0
        player.kill()
        finals, _ = _finals(sub, 1, timeout=3)
    assert daemon.returncode == 0, daemon.stderr.read()
    assert exit_s < 10, f"took {exit_s:.2f} s to exit"  # the 2 s figure is bench/'s (stopping)
    assert finals, "the segment in progress was not published on SIGINT"


def test_device_at_another_rate_is_resampled(virtual_mic, tiny):
    """A device running at 44.1 kHz: captured at its rate, resampled (soxr) before the VAD."""
    clip = EXAMPLES / "fear_tess_OAF_back_fear.wav"
    ep = free_endpoint()
    daemon = spawn("run", "--model", tiny, "--bind", ep, "--stats-interval", "0.5", "--samplerate", "44100")
    try:
        with Subscriber(ep, topics=("emotion", "stats")) as sub:
            first = hearing(sub)
            assert first["device_samplerate"] == 44100
            virtual_mic.play(clip).wait(timeout=60)
            finals, stats = _finals(sub, 1, timeout=30)
        assert len(finals) == 1
        # stream time is counted at the model's 16 kHz whatever the device rate
        assert 0.8 <= finals[0]["end"] - finals[0]["start"] <= load_audio(clip).duration + 0.6
        assert stats[-1]["frames_captured"] >= 44100 * 1.5
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.communicate(timeout=10)
    assert daemon.returncode == 0

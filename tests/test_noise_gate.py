"""Audio that is not speech is not speech: digital silence, white and pink noise, mains
hum never make a segment, however long they go on, and speech in noise at 10 and 20 dB
SNR is still found. WebRTC VAD alone calls much of that noise speech (each test shows
it does, so the test means something); the level gate in front of it
(serstream.gate) is what keeps it out.

Expected segments come from the layout of the signal (where each clip was put, and where
its energy says its speech is), never from the segmenter itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import webrtcvad

from audio import CORPORA, SR, speech_clip
from procs import EXAMPLES, serstream
from serstream.decode import load_audio
from serstream.vad import VadConfig, segments, to_pcm16

FRAME = SR * VadConfig().frame_ms // 1000
NOISE_DBFS = -20.0


def _scaled(y: np.ndarray, dbfs: float) -> np.ndarray:
    return (y * (10 ** (dbfs / 20) / np.sqrt(np.mean(y * y)))).astype(np.float32)


def _noise(kind: str, seconds: float, dbfs: float = NOISE_DBFS, seed: int = 0) -> np.ndarray:
    n = int(seconds * SR)
    rng = np.random.default_rng(seed)
    if kind == "silence":
        return np.zeros(n, np.float32)
    if kind == "white":
        return _scaled(rng.standard_normal(n), dbfs)
    if kind == "pink":  # 1/f power: white noise shaped by 1/sqrt(f) in the frequency domain
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.fft.rfftfreq(n, 1 / SR)
        spectrum[1:] /= np.sqrt(f[1:])
        spectrum[0] = 0
        return _scaled(np.fft.irfft(spectrum, n), dbfs)
    t = np.arange(n) / SR
    if kind == "hum":  # mains hum, 50 Hz
        return _scaled(np.sin(2 * np.pi * 50 * t), dbfs)
    if kind == "buzz":  # mains buzz: 50 Hz and its odd harmonics, as a transformer makes it
        return _scaled(sum(np.sin(2 * np.pi * 50 * k * t) / k for k in (1, 3, 5, 7, 9)), dbfs)
    raise ValueError(kind)


def _webrtc_speech_frames(y: np.ndarray) -> int:
    vad = webrtcvad.Vad(VadConfig().aggressiveness)
    return sum(vad.is_speech(to_pcm16(y[i : i + FRAME]).tobytes(), SR) for i in range(0, y.size - FRAME + 1, FRAME))


def _active_span(clip: np.ndarray) -> tuple[int, int]:
    """Where a clean clip's speech is, by its energy: the frames within 30 dB of its loudest."""
    frames = clip[: clip.size // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)
    loud = np.flatnonzero(db > db.max() - 30)
    return int(loud[0] * FRAME), int((loud[-1] + 1) * FRAME)


def _active_rms(clip: np.ndarray) -> float:
    lo, hi = _active_span(clip)
    return float(np.sqrt(np.mean(clip[lo:hi].astype(np.float64) ** 2)))


@pytest.mark.parametrize("kind", ["silence", "white", "pink", "hum", "buzz"])
def test_noise_alone_never_makes_a_segment(kind):
    y = _noise(kind, 60)
    if kind != "silence":  # what the gate is for: WebRTC VAD alone hears speech in it
        assert _webrtc_speech_frames(y) > 0
    assert segments(y) == []


@pytest.mark.parametrize("kind", ["white", "pink"])
def test_noise_that_starts_after_silence_makes_at_most_its_onset_a_segment(kind):
    """The floor needs a moment to learn a noise that switches on: at most one short
    segment at its onset, never a stream of them."""
    y = np.concatenate([np.zeros(SR * 2, np.float32), _noise(kind, 60)])
    finals = segments(y)
    assert len(finals) <= 1 and all(s.end - s.start <= 4 * SR for s in finals)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Two clips of each corpus."""
    return [speech_clip(c, i) for c in CORPORA for i in (0, 5)]


@pytest.mark.parametrize("snr_db", [20, 10])
@pytest.mark.parametrize("kind", ["white", "pink", "buzz"])
def test_speech_in_steady_noise_is_still_found(clips, kind, snr_db):
    """Clips 2 s apart, each brought to the same speech level (-26 dBFS over its active
    part), over one unbroken noise ``snr_db`` below that: every clip gives a segment over
    its speech, and no segment lies in noise alone."""
    speech_dbfs, gap = -26.0, 2 * SR
    spans, at = [], gap
    placed = []
    for clip in clips:
        lo, hi = _active_span(clip)
        spans.append((at + lo, at + hi))
        placed.append((at, clip * (10 ** (speech_dbfs / 20) / _active_rms(clip))))
        at += clip.size + gap
    y = _noise(kind, at / SR, dbfs=speech_dbfs - snr_db, seed=1)
    for start, clip in placed:
        y[start : start + clip.size] += clip
    finals = segments(y)
    for i, (lo, hi) in enumerate(spans):
        assert any(s.start < hi and s.end > lo for s in finals), f"clip {i} not found at {snr_db} dB SNR"
    for s in finals:
        assert any(s.start < hi and s.end > lo for lo, hi in spans), f"a segment in noise alone: {s.start / SR:.2f} s"


def test_digital_silence_between_clips_never_joins_them():
    """The eight example clips, each followed by 1 s of exact zeros, three times over: one
    final per clip (24), each over its own clip. WebRTC VAD's adapted state once called
    the zeros speech in the third pass and joined two clips."""
    sr = SR
    zeros = np.zeros(sr, np.float32)
    unit, spans, at = [], [], 0
    for _ in range(3):
        for p in sorted(EXAMPLES.glob("*.wav")):
            clip = load_audio(p).samples
            lo, hi = _active_span(clip)
            spans.append((at + lo, at + hi))
            unit += [clip, zeros]
            at += clip.size + zeros.size
    finals = segments(np.concatenate(unit))
    assert len(finals) == len(spans) == 24
    for s, (lo, hi) in zip(finals, spans, strict=True):
        assert s.start < hi and s.end > lo


def test_replaying_noise_publishes_nothing(tiny, tmp_path):
    """Through the daemon's own process: a minute of pink noise and one of hum, no
    emotion event; the stats still say how loud the input was."""
    path = tmp_path / "noise.flac"
    sf.write(path, np.concatenate([_noise("pink", 60), _noise("hum", 60)]), SR)
    r = serstream("replay", "--model", tiny, "--no-publish", "--json", "--stats", "--speed", "0", path)
    assert r.returncode == 0, r.stderr
    messages = [json.loads(x) for x in r.stdout.splitlines()]
    assert [m for m in messages if m["type"] == "emotion"] == []
    assert messages[-1]["segments"] == 0 and -25 < messages[-1]["level_rms_dbfs"] < -15

"""The streaming segmenter on its own: layout of real speech and silence, long speech,
clicks, partial cadence, flush and reset."""

from __future__ import annotations

import numpy as np
import pytest

from procs import EXAMPLES
from serstream.decode import load_audio
from serstream.vad import Segmenter, VadConfig, segments, trim

SR = 16000


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    return [load_audio(p).samples for p in sorted(EXAMPLES.glob("*.wav"))]


def _speech_span(y: np.ndarray) -> tuple[float, float]:
    s = segments(y)
    return s[0].start / SR, s[-1].end / SR


def _run(seg: Segmenter, y: np.ndarray):
    fl = seg.frame_length
    out = []
    for i in range(0, y.size - fl + 1, fl):
        out += seg.process(y[i : i + fl])
    return out + seg.flush()


def test_known_layout_gives_segments_at_the_right_times(clips):
    """Clips joined by 1-2 s silences: one segment per clip, where its speech is."""
    rng = np.random.default_rng(0)
    pad = VadConfig().speech_pad_ms / 1000
    parts, expected, t = [], [], 0.0
    for y in clips[:6]:
        gap = np.zeros(int(SR * rng.uniform(1.0, 2.0)), np.float32)
        a, b = _speech_span(y)  # where the VAD hears speech in the clip alone
        parts += [gap, y]
        t += gap.size / SR
        expected.append((t, t + a, t + b, t + y.size / SR))
        t += y.size / SR
    stream = np.concatenate(parts + [np.zeros(SR, np.float32)])
    got = segments(stream)
    assert len(got) == len(expected)
    for s, (clip_start, a, b, clip_end) in zip(got, expected, strict=True):
        start, end = s.start / SR, s.end / SR
        # covers the clip's speech; may pre-roll into the silence before it (a clip alone
        # cannot), never into the clip before
        assert clip_start - pad - 0.1 <= start <= a + 0.1
        assert b - pad - 0.05 <= end <= clip_end + pad + 0.1  # speech may run to the clip end
        assert s.final and s.audio.size == s.end - s.start


def test_silence_and_low_noise_give_nothing():
    assert segments(np.zeros(SR * 5, np.float32)) == []
    noise = (np.random.default_rng(0).standard_normal(SR * 5) * 1e-4).astype(np.float32)
    assert segments(noise) == []


def test_click_shorter_than_min_speech_is_dropped(clips):
    y = np.zeros(SR * 3, np.float32)
    burst = clips[0][int(SR * 1.2) : int(SR * 1.35)]  # 150 ms of real speech
    y[SR : SR + burst.size] = burst
    assert segments(y, config=VadConfig(min_speech_ms=300)) == []


def test_long_speech_is_split_at_max_and_partials_keep_cadence(clips):
    talk = np.concatenate([trim(y) for y in clips])  # ~15 s without pauses
    cfg = VadConfig(max_speech_ms=4000, partial_interval_ms=1000, hangover_ms=600, speech_pad_ms=200)
    events = _run(Segmenter(cfg), np.concatenate([talk, np.zeros(SR, np.float32)]))
    finals = [e for e in events if e.final]
    assert len(finals) >= 3
    assert all(e.end - e.start <= 4 * SR for e in finals)
    for idx in {e.index for e in events}:
        seg = [e for e in events if e.index == idx]
        assert seg[-1].final and sum(e.final for e in seg) == 1
        partial_ends = [e.end - e.start for e in seg if not e.final]
        # one partial each full second of the segment so far (on a frame boundary)
        assert all(SR * (k + 1) <= x < SR * (k + 1) + 480 for k, x in enumerate(partial_ends))


def test_partials_can_be_disabled(clips):
    events = _run(Segmenter(VadConfig(partial_interval_ms=0)), np.concatenate([clips[0], clips[1]]))
    assert events and all(e.final for e in events)


def test_flush_closes_open_segment_and_reset_restarts(clips):
    seg = Segmenter(VadConfig())
    y = clips[2][: int(SR * 2.5)]  # cut mid-speech
    fl = seg.frame_length
    events = []
    for i in range(0, y.size - fl + 1, fl):
        events += seg.process(y[i : i + fl])
    assert seg.in_speech and not any(e.final for e in events)
    final = seg.flush()
    assert len(final) == 1 and final[0].final and final[0].end <= seg.position
    seg.reset_states()
    assert seg.position == 0 and not seg.in_speech
    # after a reset the same audio is cut exactly the same way
    a = _run(Segmenter(VadConfig()), clips[3])
    seg.reset_states()
    b = _run(seg, clips[3])
    assert [(e.start, e.end, e.final) for e in a] == [(e.start, e.end, e.final) for e in b]


def test_trim_is_a_sub_span_and_keeps_silent_clips():
    y = load_audio(EXAMPLES / "neutral_ravdess_03-01-01-01-01-01-01.wav").samples
    t = trim(y)
    assert 0 < t.size < y.size
    start = segments(y)[0].start
    assert np.array_equal(t, y[start : start + t.size])
    silent = np.zeros(SR, np.float32)
    assert trim(silent).size == silent.size


@pytest.mark.parametrize("change", [dict(aggressiveness=5), dict(frame_ms=25), dict(hangover_ms=10),
                                    dict(speech_pad_ms=900), dict(max_speech_ms=100)])
def test_config_rejects_bad_values(change):
    with pytest.raises(ValueError):
        VadConfig(**change)


def test_frame_size_and_rate_checked():
    seg = Segmenter(VadConfig(frame_ms=20))
    with pytest.raises(ValueError):
        seg.process(np.zeros(480, np.float32))
    with pytest.raises(ValueError):
        Segmenter(VadConfig(), sr=44100)

"""The streaming segmenter on its own, on real speech: a known layout of clips and
silences, long speech, clicks, partial cadence, flush, reset, and configuration."""

from __future__ import annotations

import numpy as np
import pytest

from audio import CORPORA, SR, noise, speech_clip
from serstream.vad import Segmenter, VadConfig, segments, trim

TOL = 0.35  # s: segment edges against where the clip's speech lies
FRAME = SR * VadConfig().frame_ms // 1000


def _feed(seg: Segmenter, y: np.ndarray, flush: bool = True) -> list:
    """Every event, feeding whole frames one by one (a trailing part frame is dropped)."""
    fl = seg.frame_length
    out = []
    for i in range(0, y.size - fl + 1, fl):
        out += seg.process(np.ascontiguousarray(y[i : i + fl], dtype=np.float32))
    return out + (seg.flush() if flush else [])


def _spans(events) -> list[tuple[int, int, bool]]:
    return [(e.start, e.end, e.final) for e in events]


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """One clip from each corpus (FLAC and Ogg/Opus), each heard as one utterance."""
    out = [speech_clip(c) for c in CORPORA]
    for c, y in zip(CORPORA, out, strict=True):
        assert len(segments(y)) == 1, f"{c}: test clip should be one utterance for the VAD"
    return out


@pytest.fixture(scope="module")
def talk(clips) -> np.ndarray:
    """~9 s of continuous speech: the clips trimmed to their speech and joined."""
    return np.concatenate([trim(y) for y in clips]).astype(np.float32)


def test_known_layout_gives_one_segment_per_clip_where_its_speech_is(clips):
    """Four clips (one per corpus) joined by 1.0-2.0 s of zeros or low noise.

    WebRTC VAD adapts its noise floor to what came before, so in the stream a clip's
    own leading/trailing room noise may be heard as speech where the clip alone was not:
    a segment must cover the clip's speech (as found in the clip alone) to within TOL,
    and may widen into the clip's own silence, or by at most the pad into the gaps.
    """
    rng = np.random.default_rng(0)
    pad = VadConfig().speech_pad_ms * SR // 1000
    parts, expected, t = [], [], 0
    for i, y in enumerate(clips):
        n_gap = FRAME * int(rng.integers(1000, 2000) * SR // 1000 // FRAME)  # 1.0-2.0 s
        # zeros, or low noise (~ -80 dBFS) like a quiet room
        gap = np.zeros(n_gap, np.float32) if i % 2 == 0 else noise(n_gap, 1e-4, i).astype(np.float32)
        alone = segments(y)[0]  # where the VAD hears speech in the clip on its own
        parts += [gap, y]
        t += n_gap
        expected.append((t, t + alone.start, t + min(alone.end, y.size), t + y.size))
        t += y.size
    stream = np.concatenate([*parts, np.zeros(SR, np.float32)])
    got = segments(stream)
    assert len(got) == len(clips), [(s.start / SR, s.end / SR) for s in got]
    tol = int(TOL * SR)
    for s, (clip_start, a, b, clip_end) in zip(got, expected, strict=True):
        where = f"segment {s.start / SR:.2f}-{s.end / SR:.2f} s, clip {clip_start / SR:.2f}-{clip_end / SR:.2f} s, " \
                f"speech alone {a / SR:.2f}-{b / SR:.2f} s"
        assert clip_start - pad - FRAME <= s.start <= a + tol, where  # frames straddle edges
        assert b - tol <= s.end <= clip_end + tol, where
        assert s.final and s.start < s.speech_end <= s.end <= s.detected_at
        np.testing.assert_array_equal(s.audio, stream[s.start : s.end])
    assert [s.index for s in got] == list(range(len(clips)))


def test_clip_alone_is_found_inside_the_clip(clips):
    for y in clips:
        (s,) = segments(y)
        assert 0 <= s.start < s.end and s.start < 0.9 * SR
        assert s.end <= y.size + FRAME  # the last part frame is zero-padded


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_silence_and_low_noise_give_nothing(aggressiveness):
    cfg = VadConfig(aggressiveness=aggressiveness)
    assert segments(np.zeros(SR * 4, np.float32), config=cfg) == []
    assert segments(noise(SR * 4, 1e-4).astype(np.float32), config=cfg) == []


def test_max_speech_splits_a_long_utterance(talk):
    cfg = VadConfig(max_speech_ms=3000)
    y = np.concatenate([np.zeros(SR // 2, np.float32), talk, np.zeros(SR, np.float32)])
    finals = segments(y, config=cfg)
    assert len(finals) >= 3
    assert all(s.end - s.start <= 3 * SR for s in finals)
    # a forced cut starts the next segment where the previous one stopped: nothing is lost
    forced = [(a, b) for a, b in zip(finals, finals[1:], strict=False) if a.end - a.start > 3 * SR - FRAME]
    assert forced and all(b.start == a.end for a, b in forced)
    # without the limit it is one utterance
    assert len(segments(y, config=VadConfig(max_speech_ms=60000))) == 1


def test_partials_keep_cadence_and_each_segment_ends_with_one_final(talk):
    cfg = VadConfig(max_speech_ms=4000, partial_interval_ms=1000)
    events = _feed(Segmenter(cfg), np.concatenate([talk, np.zeros(SR, np.float32)]))
    finals = [e for e in events if e.final]
    assert len(finals) >= 2 and sum(not e.final for e in events) >= 4
    assert [e.index for e in finals] == list(range(len(finals)))
    for idx in range(len(finals)):
        seg = [e for e in events if e.index == idx]
        assert seg[-1].final and sum(e.final for e in seg) == 1
        assert len({e.start for e in seg}) == 1
        partial_lengths = [e.end - e.start for e in seg if not e.final]
        # one partial each full second of the segment so far, on a frame boundary
        for k, n in enumerate(partial_lengths):
            assert SR * (k + 1) <= n < SR * (k + 1) + FRAME, (k, n)
        # and none missing: partial k is due on the first frame ending at or after
        # start + k s, unless that frame closes the segment
        start, closed = seg[0].start, seg[-1].detected_at
        due = sum(1 for k in range(1, 60) if -(-(start + k * SR) // FRAME) * FRAME < closed)
        assert len(partial_lengths) == due


def test_partials_can_be_disabled(talk):
    events = _feed(Segmenter(VadConfig(partial_interval_ms=0)), talk)
    assert events and all(e.final for e in events)


def test_click_shorter_than_min_speech_yields_nothing(clips):
    y = clips[3]  # SAVEE: speech from ~0.2 s to the end
    for ms, found in ((150, False), (1000, True)):  # the same audio, long enough, is heard
        burst = y[int(SR * 1.0) : int(SR * 1.0) + SR * ms // 1000]
        x = np.zeros(SR * 3, np.float32)
        x[SR : SR + burst.size] = burst
        assert bool(segments(x, config=VadConfig(min_speech_ms=300))) is found, ms


def test_flush_closes_an_open_segment(clips):
    seg = Segmenter(VadConfig())
    y = clips[0][: int(SR * 2.0)]  # RAVDESS: speech from ~0.8 s to ~2.5 s, cut mid-speech
    events = _feed(seg, y, flush=False)
    assert seg.in_speech and not any(e.final for e in events)
    (final,) = seg.flush()
    assert final.final and final.start < final.end <= seg.position
    assert not seg.in_speech and seg.flush() == []


def test_reset_states_restarts_at_zero(clips):
    seg = Segmenter(VadConfig())
    first = _feed(seg, clips[1])
    assert seg.position > 0 and seg.frames > 0
    seg.reset_states()
    assert seg.position == 0 and seg.frames == 0 and not seg.in_speech
    again = _feed(seg, clips[1])
    assert _spans(again) == _spans(first) and again[0].index == 0
    np.testing.assert_array_equal(again[-1].audio, first[-1].audio)


def test_trim_returns_the_speech_sub_span(clips):
    for y in clips:
        t = trim(y)
        s = segments(y)
        assert 0 < t.size <= y.size
        np.testing.assert_array_equal(t, y[s[0].start : s[0].start + t.size])
    y = clips[0]
    assert trim(y).size < y.size - SR // 2  # RAVDESS clips start with ~0.8 s of silence
    silent = np.zeros(SR, np.float32)
    np.testing.assert_array_equal(trim(silent), silent)  # nothing heard: returned whole


def test_one_pass_equals_frame_by_frame(clips):
    y = np.concatenate([np.zeros(SR // 2, np.float32), *clips])
    whole = segments(y)
    by_frame = [e for e in _feed(Segmenter(VadConfig()), np.concatenate([y, np.zeros(FRAME, np.float32)]))
                if e.final]
    assert len(whole) >= 1 and _spans(whole) == _spans(by_frame)
    for a, b in zip(whole, by_frame, strict=True):
        np.testing.assert_array_equal(a.audio, b.audio)


@pytest.mark.parametrize("cfg", [
    VadConfig(),
    VadConfig(hangover_ms=150, speech_pad_ms=60),
    VadConfig(hangover_ms=90, speech_pad_ms=60),
], ids=["default", "hangover150", "hangover90"])
def test_segments_are_ordered_and_never_overlap(talk, cfg):
    """Short hangovers give many segments; each stretch of audio belongs to at most one."""
    y = np.concatenate([np.zeros(SR // 2, np.float32), talk, np.zeros(SR, np.float32)])
    got = segments(y, config=cfg)
    assert got
    for a, b in zip(got, got[1:], strict=False):
        assert a.end <= b.start, f"segment {b.index} starts at {b.start} inside segment {a.index} ({a.start}-{a.end})"


def test_frame_size_and_rate_are_checked():
    seg = Segmenter(VadConfig(frame_ms=20))
    assert seg.frame_length == 320
    for bad in (np.zeros(480, np.float32), np.zeros(319, np.float32), np.zeros((320, 1), np.float32)):
        with pytest.raises(ValueError):
            seg.process(bad)
    with pytest.raises(ValueError):
        Segmenter(VadConfig(), sr=44100)
    assert Segmenter(VadConfig(frame_ms=10), sr=48000).frame_length == 480


@pytest.mark.parametrize("change", [
    dict(aggressiveness=5), dict(aggressiveness=-1), dict(frame_ms=25), dict(frame_ms=40),
    dict(hangover_ms=10), dict(speech_pad_ms=900), dict(speech_pad_ms=-1), dict(start_ms=0),
    dict(start_ms=400), dict(start_window_ms=10), dict(min_speech_ms=-1), dict(max_speech_ms=100),
    dict(partial_interval_ms=-1),
], ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()))
def test_config_rejects_bad_values(change):
    with pytest.raises(ValueError):
        VadConfig(**change)


def test_config_round_trip():
    cfg = VadConfig(aggressiveness=3, frame_ms=20, max_speech_ms=5000)
    assert VadConfig.from_dict(cfg.to_dict()) == cfg


def test_block_converted_pcm_cuts_exactly_like_frame_by_frame(clips):
    """The pipeline converts whole blocks to PCM and passes frames as views; that must
    give the very same events as converting each frame on its own."""
    from serstream.vad import to_pcm16

    y = np.concatenate([np.zeros(SR // 2, np.float32), *clips, np.zeros(SR, np.float32)])
    y[SR : SR + 200] = 1.7  # beyond full scale: clipped, never wrapped around
    y[SR + 200 : SR + 400] = -2.5
    cfg = VadConfig(partial_interval_ms=500)
    a, b = Segmenter(cfg), Segmenter(cfg)
    fl = a.frame_length
    pcm = to_pcm16(y)
    ev_a, ev_b = [], []
    for i in range(0, y.size - fl + 1, fl):
        ev_a += a.process(y[i : i + fl].copy())
        ev_b += b.process(y[i : i + fl], pcm[i : i + fl])
    ev_a += a.flush()
    ev_b += b.flush()
    assert len(ev_a) > len(clips)  # partials and finals
    assert _spans(ev_a) == _spans(ev_b)
    assert all(np.array_equal(x.audio, z.audio) for x, z in zip(ev_a, ev_b, strict=True))


def test_to_pcm16_clips_scales_and_truncates():
    from serstream.vad import to_pcm16

    x = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.5, -3.0, 1e-6, -0.99999], np.float32)
    np.testing.assert_array_equal(to_pcm16(x), [0, 16383, -16383, 32767, -32767, 32767, -32767, 0, -32766])
    assert to_pcm16(x).dtype == np.int16

"""Streaming speech segmenter over WebRTC VAD decisions.

A small state machine in the style of silero-vad's ``VADIterator``: feed it fixed
frames, get back segment events or nothing; no threads, no I/O, so it is tested on
its own and used identically by the daemon and by training (:func:`trim`).

A frame is voiced when WebRTC VAD calls it speech *and* the level gate
(:mod:`serstream.gate`) finds it above digital silence and above the noise floor.
States: *idle* (keeping a pre-roll of recent audio) and *in speech*. Idle turns into
speech when at least ``start_ms`` of the last ``start_window_ms`` are voiced; speech
ends once ``hangover_ms`` pass without a voiced frame. A segment spans from
``speech_pad_ms`` before its first voiced frame to ``speech_pad_ms`` after its last
one. Segments shorter than ``min_speech_ms`` of voiced span are dropped (clicks,
coughs); at ``max_speech_ms`` a segment is closed and a new one starts at once, so
memory stays bounded however long someone talks. While a segment is open, a
*partial* event is due every ``partial_interval_ms``; every segment that was reported
at all ends with exactly one *final* event.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import webrtcvad

from serstream import limits
from serstream.gate import LevelGate
from serstream.limits import bounded, strict_fields

__all__ = ["VAD_RATES", "VAD_FRAME_MS", "VAD_MODES", "VadConfig", "Segment", "Segmenter", "Framer",
           "segments", "trim", "to_pcm16"]

# what WebRTC VAD accepts: sample rates, frame lengths, aggressiveness modes
VAD_RATES = (8000, 16000, 32000, 48000)
VAD_FRAME_MS = (10, 20, 30)
VAD_MODES = (0, 1, 2, 3)


@dataclass(frozen=True)
class VadConfig:
    """Segmenter settings, in the units a user thinks in (milliseconds, decibels).

    Each is bounded (``--help`` states the ranges); the bounds keep memory and work
    per segment finite (a ``max_speech_ms`` of 1e10 once asked for hundreds of GiB).
    ``min_level_dbfs``, ``noise_margin_db`` and ``noise_window_ms`` set the level gate
    in front of WebRTC VAD (:mod:`serstream.gate`); a model whose metadata predates
    them gets these defaults.
    """

    aggressiveness: int = bounded(2, 0, 3)
    frame_ms: int = bounded(30, 10, 30, "ms")
    speech_pad_ms: int = bounded(200, 0, 10_000, "ms")
    start_ms: int = bounded(120, 10, 10_000, "ms")
    start_window_ms: int = bounded(300, 10, 10_000, "ms")
    hangover_ms: int = bounded(450, 10, 10_000, "ms")
    min_speech_ms: int = bounded(250, 0, 60_000, "ms")
    max_speech_ms: int = bounded(10000, 100, 120_000, "ms")
    partial_interval_ms: int = bounded(1000, 0, 600_000, "ms")
    min_level_dbfs: float = bounded(-90.0, -120.0, 0.0, "dBFS")
    noise_margin_db: float = bounded(6.0, 0.0, 40.0, "dB")
    noise_window_ms: int = bounded(2000, 100, 60_000, "ms")

    def __post_init__(self) -> None:
        problems = limits.problems(self)
        if problems:  # types and ranges first: the relations below need numbers
            raise ValueError("; ".join(problems))
        if self.aggressiveness not in VAD_MODES:
            problems.append(f"aggressiveness must be one of {VAD_MODES}, got {self.aggressiveness}")
        if self.frame_ms not in VAD_FRAME_MS:
            problems.append(f"frame_ms must be one of {VAD_FRAME_MS}, got {self.frame_ms}")
        if self.start_window_ms < self.frame_ms:
            problems.append("start_window_ms must be at least one frame")
        if not 0 < self.start_ms <= self.start_window_ms:
            problems.append("start_ms must be in (0, start_window_ms]")
        if self.hangover_ms < self.frame_ms:
            problems.append("hangover_ms must be at least one frame")
        if not 0 <= self.speech_pad_ms <= self.hangover_ms:
            problems.append("speech_pad_ms must be in [0, hangover_ms]")
        if self.max_speech_ms < max(self.min_speech_ms, 4 * self.frame_ms):
            problems.append("max_speech_ms must exceed min_speech_ms")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> VadConfig:
        """Strict inverse of :meth:`to_dict`: an unknown key is a setting this code does
        not have (refused rather than ignored); a missing one takes its default."""
        return cls(**strict_fields(cls, data, "VAD settings"))


@dataclass(frozen=True)
class Segment:
    """A stretch of speech, in samples from the start of the stream.

    ``audio`` is a copy owned by the event, safe to hand to another thread.
    ``speech_end`` is where the last voiced frame ended: ``detected_at - speech_end`` is
    the hangover delay a final event waits by design.
    """

    index: int
    start: int
    end: int
    speech_end: int
    detected_at: int
    final: bool
    audio: np.ndarray


class Segmenter:
    """Cut a stream of ``frame_ms`` frames into :class:`Segment` events.

    Parameters
    ----------
    config : VadConfig
    sr : int
        8, 16, 32 or 48 kHz: what WebRTC VAD accepts.

    Examples
    --------
    >>> seg = Segmenter(VadConfig(), sr=16000)
    >>> events = []
    >>> for frame, pcm in Framer(seg.frame_length).frames(np.zeros(16000, np.float32)):
    ...     events += seg.process(frame, pcm)
    >>> events + seg.flush()
    []
    """

    def __init__(self, config: VadConfig, sr: int = 16000) -> None:
        if sr not in VAD_RATES:
            raise ValueError(f"WebRTC VAD needs one of {VAD_RATES} Hz, got {sr}")
        self.config = config
        self.sr = sr
        self.frame_length = sr * config.frame_ms // 1000
        ms = lambda v: max(1, round(v / config.frame_ms))  # noqa: E731 - frames from ms
        self._start_frames = ms(config.start_ms)
        self._start_window = ms(config.start_window_ms)
        self._hangover_frames = ms(config.hangover_ms)
        self._pad = config.speech_pad_ms * sr // 1000
        self._min_speech = config.min_speech_ms * sr // 1000
        self._max_len = config.max_speech_ms * sr // 1000
        self._partial = config.partial_interval_ms * sr // 1000
        # pre-roll: the trigger window plus the pad before it
        history = self._start_window * self.frame_length + self._pad
        self._capacity = history + self._max_len + self._hangover_frames * self.frame_length
        self._buf = np.zeros(self._capacity, dtype=np.float32)
        self._history = history
        self._gate = LevelGate(self.frame_length, sr, config.min_level_dbfs, config.noise_margin_db,
                               ms(config.noise_window_ms))
        # a frame WebRTC calls speech counts only this close to a frame above the noise
        # floor (before or after it): the soft edges of speech stay, noise alone never counts
        self._hold = max(config.start_window_ms, config.hangover_ms) * sr // 1000
        self.reset_states()

    def reset_states(self) -> None:
        """Forget everything: a new stream starts at sample 0.

        WebRTC VAD adapts its noise estimate as it goes, so it is recreated too: a
        source must be cut the same way whatever was heard before it.
        """
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._gate.reset()
        self._held_until = -1  # frames starting up to here are within the gate's hold
        self._base = 0  # stream index of self._buf[0]
        self._fill = 0
        self._pos = 0  # stream index just after the last frame fed
        self._recent: deque[tuple[int, bool]] = deque(maxlen=max(self._start_window, self._hangover_frames))
        self._in_speech = False
        self._seg_start = 0
        self._first_voiced = 0
        self._last_voiced_end = 0
        self._partials_sent = 0
        self._index = 0
        self.frames = 0
        self.voiced_frames = 0

    @property
    def position(self) -> int:
        """Samples consumed since the stream began."""
        return self._pos

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def process(self, frame: np.ndarray, pcm: np.ndarray | None = None) -> list[Segment]:
        """Feed exactly one frame of ``frame_length`` float samples; return due events.

        ``pcm``, the same frame as :func:`to_pcm16` makes it, saves converting frame by
        frame when the caller has converted a whole block at once (the conversion's
        per-call overhead was a third of the VAD's time).
        """
        if frame.shape != (self.frame_length,):
            raise ValueError(f"expected a frame of {self.frame_length} samples, got {frame.shape}")
        frame_start = self._pos
        self._append(frame)
        self._pos += self.frame_length
        voiced = self._classify(frame, to_pcm16(frame) if pcm is None else pcm)
        if self._gate(frame):
            self._held_until = frame_start + self._hold
        self.frames += 1
        self._recent.append((frame_start, voiced))
        voiced = voiced and frame_start <= self._held_until
        self.voiced_frames += voiced
        events: list[Segment] = []
        if not self._in_speech:
            window = [(s, v and s <= self._held_until) for s, v in list(self._recent)[-self._start_window :]]
            if sum(v for _, v in window) >= self._start_frames:
                first = next(s for s, v in window if v)
                self._open(max(first - self._pad, self._base, 0), first)
                self._last_voiced_end = self._pos
            else:
                self._trim_history()
            return events
        if voiced:
            self._last_voiced_end = self._pos
        silence = self._pos - self._last_voiced_end
        if silence >= self._hangover_frames * self.frame_length:
            ev = self._close(min(self._last_voiced_end + self._pad, self._pos))
            if ev is not None:
                events.append(ev)
            self._trim_history()
        elif self._pos + self.frame_length - self._seg_start > self._max_len:
            # the next frame would make it longer than max_speech_ms: cut here
            ev = self._close(self._pos, forced=True)
            if ev is not None:
                events.append(ev)
            self._open(self._pos, self._pos)
            self._last_voiced_end = self._pos
        elif self._partial and self._pos - self._seg_start >= self._partial * (self._partials_sent + 1):
            self._partials_sent += 1
            events.append(self._event(self._pos, final=False))
        return events

    def flush(self) -> list[Segment]:
        """End of stream (or a gap in it): close an open segment with its final event."""
        self._recent.clear()  # what came before a gap must not trigger what follows it
        if not self._in_speech:
            return []
        ev = self._close(min(self._last_voiced_end + self._pad, self._pos))
        return [ev] if ev is not None else []

    # ----------------------------------------------------------------- internals

    def _classify(self, frame: np.ndarray, pcm: np.ndarray) -> bool:
        """WebRTC's verdict, unless the frame is (near) digital silence. WebRTC hears
        every frame, so its adaptation follows the stream as it is."""
        speech = self._vad.is_speech(pcm.tobytes(), self.sr)
        return bool(speech) and not self._gate.silent(frame)

    def _append(self, frame: np.ndarray) -> None:
        n = frame.shape[0]
        if self._fill + n > self._capacity:  # only reachable while idle: drop oldest history
            self._drop_before(self._base + self._fill + n - self._capacity)
        self._buf[self._fill : self._fill + n] = frame
        self._fill += n

    def _drop_before(self, stream_index: int) -> None:
        k = stream_index - self._base
        if k <= 0:
            return
        k = min(k, self._fill)
        self._buf[: self._fill - k] = self._buf[k : self._fill]
        self._fill -= k
        self._base += k

    def _trim_history(self) -> None:
        if self._fill > 2 * self._history:
            self._drop_before(self._pos - self._history)

    def _open(self, start: int, first_voiced: int) -> None:
        self._drop_before(start)
        self._in_speech = True
        self._seg_start = start
        self._first_voiced = first_voiced
        self._partials_sent = 0

    def _close(self, end: int, forced: bool = False) -> Segment | None:
        self._in_speech = False
        # frames heard inside this segment must not trigger the next one: a hangover
        # shorter than the start window would otherwise re-open it over its own audio
        self._recent.clear()
        voiced_span = self._last_voiced_end - self._first_voiced
        if voiced_span < self._min_speech and self._partials_sent == 0 and not forced:
            return None
        ev = self._event(end, final=True)
        self._index += 1
        return ev

    def _event(self, end: int, final: bool) -> Segment:
        lo = self._seg_start - self._base
        hi = end - self._base
        return Segment(
            index=self._index,
            start=self._seg_start,
            end=end,
            speech_end=min(self._last_voiced_end, end),
            detected_at=self._pos,
            final=final,
            audio=self._buf[lo:hi].copy(),
        )


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Float samples as the 16-bit PCM that WebRTC VAD reads: clipped to full scale,
    scaled by 32767, truncated toward zero."""
    return (np.clip(x, -1.0, 1.0) * np.float32(32767.0)).astype(np.int16)


class Framer:
    """Cut a stream arriving in blocks of any length into the VAD's fixed frames.

    Each block is converted to the VAD's 16-bit PCM in one go (the conversion's
    per-call overhead was a third of the VAD's time); frames wholly inside a block are
    handed on as views, and only a frame that straddles two blocks is copied.

    >>> framer = Framer(480)
    >>> [f.shape for f, _ in framer.frames(np.zeros(1000, np.float32))]
    [(480,), (480,)]
    >>> framer.pending, framer.flush()[0].shape
    (40, (480,))
    """

    def __init__(self, frame_length: int) -> None:
        self._frame = np.zeros(frame_length, dtype=np.float32)
        self._pcm = np.zeros(frame_length, dtype=np.int16)
        self.pending = 0  # samples of an incomplete frame carried over to the next block

    def reset(self) -> None:
        self.pending = 0

    def frames(self, x: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(frame, pcm)`` for each frame completed by block ``x``; valid until the next."""
        frame, frame_pcm = self._frame, self._pcm
        fl = frame.shape[0]
        pcm = to_pcm16(x)
        i, n = 0, x.shape[0]
        while True:
            if self.pending == 0 and n - i >= fl:
                yield x[i : i + fl], pcm[i : i + fl]
                i += fl
                continue
            take = min(fl - self.pending, n - i)
            if take > 0:
                frame[self.pending : self.pending + take] = x[i : i + take]
                frame_pcm[self.pending : self.pending + take] = pcm[i : i + take]
                self.pending += take
                i += take
            if self.pending < fl:
                return
            self.pending = 0
            yield frame, frame_pcm

    def flush(self) -> tuple[np.ndarray, np.ndarray] | None:
        """End of stream: the incomplete frame, zero-padded (None when there is none)."""
        if self.pending == 0:
            return None
        self._frame[self.pending :] = 0.0
        self._pcm[self.pending :] = 0
        self.pending = 0
        return self._frame, self._pcm


def segments(y: np.ndarray, sr: int = 16000, config: VadConfig | None = None) -> list[Segment]:
    """Final segments of a whole signal, exactly as the daemon would cut it."""
    seg = Segmenter(config or VadConfig(), sr)
    framer = Framer(seg.frame_length)
    out: list[Segment] = []
    for f, p in framer.frames(np.asarray(y, dtype=np.float32)):
        out += [e for e in seg.process(f, p) if e.final]
    tail = framer.flush()  # the last, partial frame is zero-padded
    if tail is not None:
        out += [e for e in seg.process(*tail) if e.final]
    out += seg.flush()
    return out


def trim(y: np.ndarray, sr: int = 16000, config: VadConfig | None = None) -> np.ndarray:
    """The span from the first segment's start to the last one's end.

    What training feeds the model, so it learns on audio cut like the daemon cuts it.
    A clip in which the VAD finds no speech is returned whole rather than dropped:
    the label is still true, and quiet speakers must not vanish from the data.
    """
    segs = segments(y, sr, config)
    if not segs:
        return np.asarray(y, dtype=np.float32)
    return np.asarray(y[segs[0].start : min(segs[-1].end, y.shape[0])], dtype=np.float32)

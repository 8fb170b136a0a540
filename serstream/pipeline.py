"""The one small object that wires the stages together.

    source (microphone callback | replay thread)
      -> RingBuffer -> [downmix, Resampler] -> Framer -> Segmenter (WebRTC VAD)
      -> EmotionModel -> Outlet: Stamper -> Publisher (ZeroMQ) and local sinks

Everything after the ring runs on one consumer thread (the caller's), so the stages
need no locks; the only hand-over between threads is the lock-free ring. Live capture
and replay differ only in who writes into the ring. Each stage is its own object,
tested on its own; :class:`Pipeline` only runs the loop and turns segments into events.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from serstream.decode import Resampler, to_mono
from serstream.events import EmotionEvent, FileHealth, Message, MicHealth, Stamper, Stats
from serstream.limits import bounded, check
from serstream.publish import peer_counts
from serstream.ratelog import RateLimitedLog
from serstream.ring import RingBuffer
from serstream.vad import Framer, Segment, Segmenter, VadConfig

if TYPE_CHECKING:  # types only: importing the pipeline (for its config) must not load numba
    from serstream.model import Classification, EmotionModel
    from serstream.publish import Publisher

__all__ = ["Source", "Sink", "Listener", "Pipeline", "PipelineConfig", "Counters", "LevelMeter", "Outlet"]

log = logging.getLogger(__name__)

Sink = Callable[[Message], None]
# sees every classification with its segment (and the model's sample rate): what an
# event does not carry, such as the pooled statistics an enrolment averages
Listener = Callable[["Segment", "Classification", int], None]


class Source(Protocol):
    """A producer of audio frames into a ring (see capture.MicSource, replay.FileSource)."""

    source_id: str
    ring: RingBuffer
    sample_rate: int
    channels: int

    generation: int  # bumped when the audio was interrupted (device lost / back)

    def start(self) -> None: ...
    def finished(self) -> bool: ...
    def poll(self) -> bool: ...
    def wait(self, timeout: float) -> None: ...
    def close(self) -> None: ...
    def health(self) -> MicHealth | FileHealth: ...


@dataclass(frozen=True)
class PipelineConfig:
    """How the consumer thread works.

    ``stats_interval``: seconds between stats messages. ``poll_interval``: how long an
    idle loop waits for audio (a microphone cannot signal, so it is polled; 4 ms is
    well under a VAD frame). ``read_block``: frames taken from the ring at a time.
    """

    vad: VadConfig = field(default_factory=VadConfig)
    stats_interval: float = bounded(5.0, 0.05, 3600.0, "s")
    poll_interval: float = bounded(0.004, 0.001, 1.0, "s")
    read_block: int = bounded(2048, 64, 1 << 20, "frames")

    def __post_init__(self) -> None:
        check(self)


@dataclass
class Counters:
    """Running totals; reported on the ``stats`` topic."""

    segments: int = 0
    partials: int = 0
    events: int = 0
    errors: int = 0
    unprocessed_s: float = 0.0  # captured, then left when the daemon was stopped


class LevelMeter:
    """Input level (RMS and peak, dBFS) of the audio since the meter was last restarted."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._sumsq, self._peak, self._n = 0.0, 0.0, 0

    def add(self, mono: np.ndarray) -> None:
        if mono.size:
            self._sumsq += float(np.dot(mono, mono))
            self._peak = max(self._peak, float(np.max(np.abs(mono))))
            self._n += mono.size

    def reading(self) -> tuple[float | None, float | None]:
        """RMS and peak in dBFS (None when nothing came in); reading changes nothing."""
        if self._n == 0:
            return None, None
        return _dbfs(math.sqrt(self._sumsq / self._n)), _dbfs(self._peak)


def _dbfs(x: float) -> float:
    # digital silence reads -200 dBFS; NaN (a device delivering NaN) stays NaN, which
    # the stamper sends as null
    return round(20 * math.log10(max(x, 1e-10)), 1)


class Outlet:
    """Where messages go: each is stamped once (:class:`~serstream.events.Stamper`), then
    the very same :class:`~serstream.events.Message` goes to the ZeroMQ socket (if any)
    and to every local sink (stdout printers)."""

    def __init__(self, publisher: Publisher | None, sinks: list[Sink] | None = None,
                 stamper: Stamper | None = None) -> None:
        self.publisher = publisher
        self.sinks = list(sinks or [])
        self.stamper = stamper or Stamper()

    @property
    def session(self) -> str:
        return self.stamper.session

    def send(self, body: EmotionEvent | Stats) -> None:
        message = self.stamper.stamp(body)
        if self.publisher is not None:
            self.publisher.send(message)
        for sink in self.sinks:
            sink(message)


class Pipeline:
    """Consume one source at a time and publish what the model hears in it."""

    def __init__(
        self,
        model: EmotionModel,
        publisher: Publisher | None,
        config: PipelineConfig | None = None,
        sinks: list[Sink] | None = None,
        outlet: Outlet | None = None,
        listeners: list[Listener] | None = None,
    ) -> None:
        self.model = model
        self.listeners = list(listeners or [])
        self.config = config or PipelineConfig()
        # another outlet: a worker process hands its bodies to the parent, which stamps them
        self.outlet = outlet or Outlet(publisher, sinks)
        self.sr = model.sample_rate
        self.segmenter = Segmenter(self.config.vad, self.sr)
        self.framer = Framer(self.segmenter.frame_length)
        self.counters = Counters()
        self.level = LevelMeter()
        self.started = time.monotonic()
        self._next_stats = self.started + self.config.stats_interval
        self._wall_offset = time.time() - time.monotonic()
        self._source: Source | None = None
        self._resampler = Resampler(self.sr, self.sr)
        self._stream_samples = 0  # samples at model rate fed to the segmenter
        self._rate_ratio = 1.0
        self._stop = threading.Event()
        self._classifying: Segment | None = None  # the segment the model is working on
        self._out_of_time = False  # the stop's budget for a final is spent
        self._error_log = RateLimitedLog(log, logging.ERROR)

    # ------------------------------------------------------------------ running
    def run(self, source: Source, stop: threading.Event) -> None:
        """Process ``source`` until it is exhausted or ``stop`` is set.

        On stop, processing ends at once, however far behind it is: the segment in
        progress is closed with a final from the audio processed so far, and what was
        captured but not processed is counted (``unprocessed_s``) and logged, never
        silently dropped. A service manager waits seconds for a stop, not for a slow
        model to work off a backlog (see :mod:`serstream.stopping`).
        """
        self._begin(source)
        self._stop = stop
        cfg = self.config
        block = np.zeros((cfg.read_block, source.channels), dtype=np.float32)
        source.start()
        generation = source.generation
        exhausted = False
        try:
            while not stop.is_set():  # checked with data waiting too: a fast replay never lets the ring run dry
                n = source.ring.read(block)
                if n:
                    self._consume(block[:n])
                    self._maybe_stats()
                    continue
                if source.finished() and source.ring.available == 0:
                    exhausted = True
                    break
                if source.poll() or source.generation != generation:
                    generation = source.generation
                    self._interrupted()
                self._maybe_stats()
                source.wait(cfg.poll_interval)
        finally:
            source.close()
        if exhausted:
            # the resampler's and the framer's tails are the end of the stream
            self._feed(self._resampler(np.zeros(0, dtype=np.float32), last=True))
            tail = self.framer.flush()
            if tail is not None:
                self._frame(*tail)
        else:
            self._left_unprocessed(source)
        for ev in self.segmenter.flush():
            self._emit(ev)
        self.publish_stats()

    def cut_short(self, final: bool) -> None:
        """Stop hook (:meth:`serstream.stopping.Stopper.on_stop`), called from another
        thread: abandon a partial result being computed (the final replaces it) and,
        with ``final``, any classification still running: time is up."""
        if final:
            self._out_of_time = True
        running = self._classifying
        if running is not None and (final or not running.final):
            self.model.interrupt()

    def _left_unprocessed(self, source: Source) -> None:
        """Stopped early: count the audio captured but never processed."""
        left = source.ring.available / source.sample_rate
        self.counters.unprocessed_s = round(self.counters.unprocessed_s + left, 3)
        if left >= 0.01:  # (a few frames' worth is the end of the last block, not a backlog)
            log.warning("stopped with %.2f s of captured audio from %s not processed (at %.2f s of its stream)",
                        left, source.source_id, self._stream_samples / self.sr)

    def _interrupted(self) -> None:
        """The audio has a hole (device lost or back): what was said before it is a
        segment of its own, and subscribers hear about the device state now."""
        for ev in self.segmenter.flush():
            self._emit(ev)
        self.publish_stats()

    def _begin(self, source: Source) -> None:
        self._source = source
        self.segmenter.reset_states()
        self.framer.reset()
        self._resampler = Resampler(source.sample_rate, self.sr)
        self._stream_samples = 0
        self._rate_ratio = source.sample_rate / self.sr

    def _consume(self, block: np.ndarray) -> None:
        mono = to_mono(block)
        self.level.add(mono)
        self._feed(self._resampler(np.ascontiguousarray(mono)))

    def _feed(self, x: np.ndarray) -> None:
        for frame, pcm in self.framer.frames(x):
            self._frame(frame, pcm)

    def _frame(self, frame: np.ndarray, pcm: np.ndarray) -> None:
        self._stream_samples += frame.shape[0]
        for ev in self.segmenter.process(frame, pcm):
            self._emit(ev)

    # ------------------------------------------------------------------ events
    def _arrival(self, stream_sample: int) -> float:
        """Monotonic time when ``stream_sample`` (model rate) entered the ring."""
        assert self._source is not None
        idx = max(0, int(stream_sample * self._rate_ratio) - 1)
        t = self._source.ring.arrival_time(idx)
        return time.monotonic() if t is None else t

    def _emit(self, seg: Segment) -> None:
        assert self._source is not None
        if self._stop.is_set() and not seg.final:
            return  # stopping: the segment's final is what matters now
        result = self._classify(seg)
        if result is None:
            return
        for listener in self.listeners:
            listener(seg, result, self.sr)
        probs = result.probabilities
        decided = self._arrival(seg.detected_at)
        event = EmotionEvent(
            source=self._source.source_id,
            segment=seg.index,
            final=seg.final,
            start=round(seg.start / self.sr, 4),
            end=round(seg.end / self.sr, 4),
            wall_start=round(self._arrival(seg.start + 1) + self._wall_offset, 4),
            wall_end=round(self._arrival(seg.end) + self._wall_offset, 4),
            label=result.label,
            confidence=round(result.confidence, 5),
            probabilities={lab: round(float(p), 5) for lab, p in zip(result.labels, probs, strict=True)},
            model=self.model.model_id,
            voice=result.voice,
            vad_delay_ms=round((seg.detected_at - seg.speech_end) * 1000 / self.sr, 2),
            processing_ms=round((time.monotonic() - decided) * 1000, 3),
            features_ms=round(result.features_ms, 3),
            inference_ms=round(result.inference_ms, 3),
        )
        if seg.final:
            self.counters.segments += 1
        else:
            self.counters.partials += 1
        self.counters.events += 1
        self.outlet.send(event)

    def _classify(self, seg: Segment) -> Classification | None:
        """The model's answer for ``seg``, or None (counted, logged) when there is none."""
        assert self._source is not None
        if self._out_of_time:
            self.counters.errors += 1
            log.warning("segment %d of %s: no final: the stop came before the model could classify it",
                        seg.index, self._source.source_id)
            return None
        self._classifying = seg
        try:
            return self.model.classify(seg.audio)
        except Exception as exc:  # a bad segment or a bad model answer must not take the daemon down
            # already loaded (the model came from there); imported here so that importing
            # the pipeline for its configuration does not load numba
            from serstream.model import ModelInterrupted

            if isinstance(exc, ModelInterrupted):
                if seg.final:
                    self.counters.errors += 1
                    log.warning("segment %d of %s: no final: the model was still working when the stop's "
                                "time ran out", seg.index, self._source.source_id)
                return None
            self.counters.errors += 1
            # said at once, then once a minute at most: a broken model fails on every segment
            self._error_log(type(exc).__name__, "segment %d of %s could not be classified: %s",
                            seg.index, self._source.source_id, exc)
            return None
        finally:
            self._classifying = None

    # ------------------------------------------------------------------ stats
    def _maybe_stats(self) -> None:
        now = time.monotonic()
        if now >= self._next_stats:
            self._next_stats = now + self.config.stats_interval
            self.publish_stats()

    def stats(self) -> Stats:
        """The stats message as it would be sent now (input level: since the last one)."""
        src = self._source
        assert src is not None, "stats describe a source: run() one first"
        rms, peak = self.level.reading()
        publisher = self.outlet.publisher
        return Stats(
            source=src.source_id,
            uptime_s=round(time.monotonic() - self.started, 3),
            stream_s=round(self._stream_samples / self.sr, 3),
            frames_captured=src.ring.frames_written,
            overflows=src.ring.dropped,
            buffered_s=round(src.ring.available / src.sample_rate, 3),
            segments=self.counters.segments,
            partials=self.counters.partials,
            events=self.counters.events,
            errors=self.counters.errors,
            unprocessed_s=self.counters.unprocessed_s,
            **peer_counts(publisher),
            level_rms_dbfs=rms,
            level_peak_dbfs=peak,
            in_speech=self.segmenter.in_speech,
            health=src.health(),
        )

    def publish_stats(self) -> None:
        """Send a stats message; the level meter starts over for the next one."""
        stats = self.stats()
        self.level.restart()
        self.outlet.send(stats)

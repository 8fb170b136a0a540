"""The one small object that wires the stages together.

    source (microphone callback | replay thread)
      -> RingBuffer -> [downmix, soxr resample] -> Segmenter (WebRTC VAD)
      -> FeatureExtractor -> EmotionModel -> Publisher (+ optional local sinks)

Everything after the ring runs on one consumer thread (the caller's), so the stages
need no locks; the only hand-over between threads is the lock-free ring. Live capture
and replay differ only in who writes into the ring.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import soxr

from serstream.events import SCHEMA_VERSION, STATS_TOPIC, EmotionEvent
from serstream.model import EmotionModel
from serstream.publish import Publisher
from serstream.ring import RingBuffer
from serstream.vad import Segment, Segmenter, VadConfig, to_pcm16

__all__ = ["Source", "Pipeline", "PipelineConfig", "Counters"]

log = logging.getLogger(__name__)

Sink = Callable[[str, dict[str, Any]], None]


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
    def health(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class PipelineConfig:
    vad: VadConfig = field(default_factory=VadConfig)
    stats_interval: float = 5.0
    poll_interval: float = 0.004
    read_block: int = 2048


@dataclass
class Counters:
    """Running totals; reported on the ``stats`` topic."""

    frames_in: int = 0
    segments: int = 0
    partials: int = 0
    events: int = 0
    errors: int = 0
    _sumsq: float = 0.0
    _peak: float = 0.0
    _n: int = 0

    def level(self, mono: np.ndarray) -> None:
        if mono.size:
            self._sumsq += float(np.dot(mono, mono))
            self._peak = max(self._peak, float(np.max(np.abs(mono))))
            self._n += mono.size

    def take_level(self) -> tuple[float | None, float | None]:
        """RMS and peak in dBFS since the last call (None when nothing came in)."""
        if self._n == 0:
            return None, None
        rms = math.sqrt(self._sumsq / self._n)
        out = (_dbfs(rms), _dbfs(self._peak))
        self._sumsq, self._peak, self._n = 0.0, 0.0, 0
        return out


def _dbfs(x: float) -> float:
    return round(20 * math.log10(max(x, 1e-10)), 1)


class Pipeline:
    """Consume one source at a time and publish what the model hears in it."""

    def __init__(
        self,
        model: EmotionModel,
        publisher: Publisher | None,
        config: PipelineConfig | None = None,
        sinks: list[Sink] | None = None,
    ) -> None:
        self.model = model
        self.publisher = publisher
        self.config = config or PipelineConfig()
        self.sinks = list(sinks or [])
        self.sr = model.sample_rate
        self.segmenter = Segmenter(self.config.vad, self.sr)
        self.counters = Counters()
        self.started = time.monotonic()
        self._next_stats = self.started + self.config.stats_interval
        self._wall_offset = time.time() - time.monotonic()
        self._source: Source | None = None
        self._frame = np.zeros(self.segmenter.frame_length, dtype=np.float32)
        self._frame_pcm = np.zeros(self.segmenter.frame_length, dtype=np.int16)
        self._frame_fill = 0
        self._stream_samples = 0  # samples at model rate fed to the segmenter
        self._rate_ratio = 1.0

    # ------------------------------------------------------------------ running
    def run(self, source: Source, stop: threading.Event) -> None:
        """Process ``source`` until it is exhausted or ``stop`` is set.

        On stop the audio already captured is drained and an open segment is closed
        with its final event, so Ctrl-C never swallows the last thing said.
        """
        self._begin(source)
        cfg = self.config
        block = np.zeros((cfg.read_block, source.channels), dtype=np.float32)
        resampler = (
            soxr.ResampleStream(source.sample_rate, self.sr, 1, dtype="float32", quality="HQ")
            if source.sample_rate != self.sr
            else None
        )
        source.start()
        generation = source.generation
        try:
            while True:
                n = source.ring.read(block)
                if n:
                    self._consume(block[:n], resampler)
                    self._maybe_stats()
                    continue
                if stop.is_set() or (source.finished() and source.ring.available == 0):
                    break
                if source.poll() or source.generation != generation:
                    generation = source.generation
                    self._interrupted()
                self._maybe_stats()
                source.wait(cfg.poll_interval)
        finally:
            source.close()
        # whatever the producer wrote before it stopped is still ours to process
        while (n := source.ring.read(block)) > 0:
            self._consume(block[:n], resampler)
        if resampler is not None:
            self._feed(resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        if self._frame_fill:
            self._frame[self._frame_fill :] = 0.0
            self._frame_pcm[self._frame_fill :] = 0
            self._frame_fill = self._frame.shape[0]
            self._feed(np.zeros(0, dtype=np.float32))
        for ev in self.segmenter.flush():
            self._emit(ev)
        self.publish_stats()

    def _interrupted(self) -> None:
        """The audio has a hole (device lost or back): what was said before it is a
        segment of its own, and subscribers hear about the device state now."""
        for ev in self.segmenter.flush():
            self._emit(ev)
        self.publish_stats()

    def _begin(self, source: Source) -> None:
        self._source = source
        self.segmenter.reset_states()
        self._frame_fill = 0
        self._stream_samples = 0
        self._rate_ratio = source.sample_rate / self.sr

    def _consume(self, block: np.ndarray, resampler: soxr.ResampleStream | None) -> None:
        mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1, dtype=np.float32)
        self.counters.frames_in += mono.shape[0]
        self.counters.level(mono)
        if resampler is not None:
            mono = resampler.resample_chunk(np.ascontiguousarray(mono))
        self._feed(mono)

    def _feed(self, x: np.ndarray) -> None:
        """Cut the model-rate stream into VAD frames and run the segmenter on each.

        The block is converted to the VAD's 16-bit PCM in one go; frames wholly inside
        it are passed as views, and only a frame that straddles two blocks is copied.
        """
        frame, frame_pcm = self._frame, self._frame_pcm
        fl = frame.shape[0]
        pcm = to_pcm16(x)
        i = 0
        n = x.shape[0]
        while True:
            if self._frame_fill == 0 and n - i >= fl:
                f, p = x[i : i + fl], pcm[i : i + fl]
                i += fl
            else:
                take = min(fl - self._frame_fill, n - i)
                if take > 0:
                    frame[self._frame_fill : self._frame_fill + take] = x[i : i + take]
                    frame_pcm[self._frame_fill : self._frame_fill + take] = pcm[i : i + take]
                    self._frame_fill += take
                    i += take
                if self._frame_fill < fl:
                    return
                self._frame_fill = 0
                f, p = frame, frame_pcm
            self._stream_samples += fl
            for ev in self.segmenter.process(f, p):
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
        try:
            result = self.model.classify(seg.audio)
        except Exception as exc:  # a bad segment or a bad model answer must not take the daemon down
            self.counters.errors += 1
            log.error("segment %d of %s could not be classified: %s", seg.index, self._source.source_id, exc)
            return
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
            vad_delay_ms=round((seg.detected_at - seg.speech_end) * 1000 / self.sr, 2),
            processing_ms=0.0,
            features_ms=round(result.features_ms, 3),
            inference_ms=round(result.inference_ms, 3),
        )
        if seg.final:
            self.counters.segments += 1
        else:
            self.counters.partials += 1
        self.counters.events += 1
        payload = event.to_dict()
        payload["processing_ms"] = round((time.monotonic() - decided) * 1000, 3)
        self._send("emotion", payload)

    def _send(self, topic: str, payload: dict[str, Any]) -> None:
        if self.publisher is not None:
            self.publisher.publish(topic, payload)
        for sink in self.sinks:
            sink(topic, payload)

    # ------------------------------------------------------------------ stats
    def _maybe_stats(self) -> None:
        now = time.monotonic()
        if now >= self._next_stats:
            self._next_stats = now + self.config.stats_interval
            self.publish_stats()

    def stats(self) -> dict[str, Any]:
        src = self._source
        rms, peak = self.counters.take_level()
        health = src.health() if src is not None else {}
        return {
            "type": STATS_TOPIC,
            "schema": SCHEMA_VERSION,
            "source": src.source_id if src else None,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "stream_s": round(self._stream_samples / self.sr, 3),
            "frames_captured": src.ring.frames_written if src else 0,
            "overflows": src.ring.dropped if src else 0,
            "buffered_s": round(src.ring.available / src.sample_rate, 3) if src else 0.0,
            "segments": self.counters.segments,
            "partials": self.counters.partials,
            "events": self.counters.events,
            "errors": self.counters.errors,
            "dropped": self.publisher.dropped if self.publisher else 0,
            "subscriptions": self.publisher.subscriptions if self.publisher else 0,
            "level_rms_dbfs": rms,
            "level_peak_dbfs": peak,
            "in_speech": self.segmenter.in_speech,
            **health,
        }

    def publish_stats(self) -> None:
        self._send(STATS_TOPIC, self.stats())

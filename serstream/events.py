"""What goes over the wire: the two message kinds, their envelope, and their encoding.

A message is a *body* (:class:`EmotionEvent` or :class:`Stats`: only what was measured)
given its envelope by :meth:`Stamper.stamp` (``type``, ``schema``, ``session``,
per-topic ``seq``, ``published_at``) and encoded once. That one :class:`Message` is what
every sink gets, the ZeroMQ socket and ``--json`` on stdout alike, so what a subscriber
receives and what is printed are the same bytes, whether or not anything is published.

The JSON Schema in ``serstream/schema/event.schema.json`` is the contract for
subscribers in other languages; ``tests/test_events.py`` validates what each sink
actually wrote against it. A non-finite number (NaN, ±inf: a broken model, a broken
driver) is sent as ``null`` and its field is named in ``non_finite``; NaN never reaches
the JSON.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

__all__ = [
    "SCHEMA_VERSION",
    "EMOTION_TOPIC",
    "STATS_TOPIC",
    "TOPICS",
    "EmotionEvent",
    "MicHealth",
    "FileHealth",
    "Stats",
    "Message",
    "Stamper",
    "encode",
]

SCHEMA_VERSION = 3
EMOTION_TOPIC = "emotion"
STATS_TOPIC = "stats"
TOPICS = (EMOTION_TOPIC, STATS_TOPIC)


def _shallow(obj: Any) -> dict[str, Any]:
    # shallow on purpose: dataclasses.asdict deep-copies and costs more than the rest
    # of publishing; the stamper copies what it changes
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True)
class EmotionEvent:
    """One classification of one speech segment (partial while it is still going on).

    Times: ``start``/``end`` are seconds of stream time (from the start of the source,
    exact, sample-counted); ``wall_start``/``wall_end`` are Unix times at which those
    samples entered the pipeline. ``vad_delay_ms`` is the hangover the VAD waits by
    design before calling speech over; ``processing_ms`` is everything else, from the
    arrival of the last sample the decision needed to the event being handed on.
    """

    topic: ClassVar[str] = EMOTION_TOPIC

    source: str
    segment: int
    final: bool
    start: float
    end: float
    wall_start: float
    wall_end: float
    label: str
    confidence: float
    probabilities: dict[str, float]
    model: str
    voice: str | None  # the enrolled voice the model judged against (None: the average voice)
    vad_delay_ms: float
    processing_ms: float
    features_ms: float
    inference_ms: float

    def to_dict(self) -> dict[str, Any]:
        return _shallow(self)


@dataclass(frozen=True)
class MicHealth:
    """A microphone's state, in every stats message while capturing (see capture.MicSource)."""

    device: str  # "ok", "lost" (reopening with backoff) or "closed"
    device_name: str
    device_samplerate: int
    callbacks: int
    reconnects: int
    lost_for_s: float | None


@dataclass(frozen=True)
class FileHealth:
    """A replayed file's state, in every stats message while replaying (see replay.FileSource)."""

    non_finite_samples: int  # NaN/inf samples in the file, replaced by 0
    device: str = "file"


@dataclass(frozen=True)
class Stats:
    """Running totals of one pipeline and the state of its source, every ``stats_interval``.

    ``level_*`` cover the audio since the previous stats message (None when none came in).
    """

    topic: ClassVar[str] = STATS_TOPIC

    source: str
    uptime_s: float
    stream_s: float
    frames_captured: int
    overflows: int
    buffered_s: float
    segments: int
    partials: int
    events: int
    errors: int
    unprocessed_s: float
    subscriptions: int
    subscriptions_refused: int
    peers_cut: int
    handshakes_failed: int
    level_rms_dbfs: float | None
    level_peak_dbfs: float | None
    in_speech: bool
    health: MicHealth | FileHealth

    def to_dict(self) -> dict[str, Any]:
        d = _shallow(self)
        d.update(asdict(d.pop("health")))  # flat on the wire: "device": "lost" is what people grep for
        return d


@dataclass(frozen=True)
class Message:
    """A stamped message: its topic, its fields as the schema describes them, and those
    fields encoded (the second ZeroMQ frame, and the line ``--json`` prints)."""

    topic: str
    payload: Mapping[str, Any]
    data: bytes

    @classmethod
    def of(cls, topic: str, payload: Mapping[str, Any]) -> Message:
        """A message received and parsed elsewhere (``listen``), to hand to the same sinks."""
        return cls(topic, payload, encode(payload))


class Stamper:
    """Gives each message its envelope, once, before any sink sees it.

    ``seq`` counts per topic from 0 for this ``session``: a jump, seen by a subscriber,
    is a message it lost. One stamper per daemon process (it lives with the pipeline,
    on the pipeline's thread); ``session`` is fresh for each process.
    """

    def __init__(self, session: str | None = None) -> None:
        self.session = session or uuid.uuid4().hex[:12]
        self._seq: dict[str, int] = {}

    def stamp(self, body: EmotionEvent | Stats) -> Message:
        topic = body.topic
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        out: dict[str, Any] = {"type": topic, "schema": SCHEMA_VERSION, "session": self.session, "seq": seq}
        non_finite: list[str] = []
        for key, value in body.to_dict().items():
            out[key] = _finite(value, key, non_finite)
        out["published_at"] = round(time.time(), 4)
        if non_finite:
            out["non_finite"] = non_finite
        return Message(topic, out, encode(out))


def _finite(value: Any, path: str, bad: list[str]) -> Any:
    """``value`` with NaN/inf replaced by None (their paths appended to ``bad``)."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        bad.append(path)
        return None
    if isinstance(value, dict):
        return {k: _finite(v, f"{path}.{k}", bad) for k, v in value.items()}
    return value


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact JSON; refuses NaN/inf (the stamper has replaced them) rather than write
    the non-standard ``NaN`` that many JSON parsers reject."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()

"""What goes over the wire: emotion events and stats, as versioned JSON.

The JSON Schema in ``serstream/schema/event.schema.json`` is the contract for
subscribers in other languages; ``tests/test_events.py`` checks every event the
daemon sends against it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["SCHEMA_VERSION", "EMOTION_TOPIC", "STATS_TOPIC", "EmotionEvent", "encode"]

SCHEMA_VERSION = 1
EMOTION_TOPIC = "emotion"
STATS_TOPIC = "stats"


@dataclass
class EmotionEvent:
    """One classification of one speech segment (partial while it is still going on).

    Times: ``start``/``end`` are seconds of stream time (from the start of the source,
    exact, sample-counted); ``wall_start``/``wall_end`` are Unix times at which those
    samples entered the pipeline. ``vad_delay_ms`` is the hangover the VAD waits by
    design before calling speech over; ``processing_ms`` is everything else, from the
    arrival of the last sample the decision needed to the hand-over to ZeroMQ.
    """

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
    vad_delay_ms: float
    processing_ms: float
    features_ms: float
    inference_ms: float
    session: str = ""
    seq: int = -1
    published_at: float = 0.0
    schema: int = SCHEMA_VERSION
    type: str = EMOTION_TOPIC
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # shallow on purpose: dataclasses.asdict deep-copies and costs more than the
        # rest of publishing; the caller owns the event and its dicts
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        if not d["extra"]:
            d.pop("extra")
        return d


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()

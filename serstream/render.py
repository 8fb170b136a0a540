"""How messages look on a terminal: one line each, or JSON lines for machines."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from serstream.events import STATS_TOPIC, Message


def human(payload: Mapping[str, Any]) -> str:
    if payload.get("type") == STATS_TOPIC:
        lvl = payload.get("level_rms_dbfs")
        return (
            f"[stats] {payload.get('source')}  up {payload.get('uptime_s', 0):.0f}s  "
            f"frames {payload.get('frames_captured')}  overflows {payload.get('overflows')}  "
            f"segments {payload.get('segments')}  events {payload.get('events')}  "
            f"subscriptions {payload.get('subscriptions')}  level {'-' if lvl is None else f'{lvl:.1f} dBFS'}  "
            f"device {payload.get('device', '?')}"
        )
    stamp = time.strftime("%H:%M:%S", time.localtime(payload.get("wall_end", time.time())))
    kind = "final  " if payload.get("final") else "partial"
    confidence = payload.get("confidence")
    return (
        f"{stamp}  {payload.get('source')}  #{payload.get('segment')}  {kind}  "
        f"{payload.get('label', '?'):<9} {'  -' if confidence is None else f'{confidence:.2f}'}  "
        f"[{payload.get('start', 0):7.2f}-{payload.get('end', 0):7.2f} s]  "
        f"{payload.get('processing_ms', 0):.1f} ms"
        + (f"  voice {voice}" if (voice := payload.get("voice")) else "")
    )


class Printer:
    """A sink writing messages to stdout: emotion events, and stats messages if asked.

    ``as_json`` writes each message's encoded bytes as they are (the very JSON a
    subscriber receives), one per line.
    """

    def __init__(self, as_json: bool = False, stats: bool = False, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stats = stats
        self.stream = stream or sys.stdout

    def __call__(self, message: Message) -> None:
        if message.topic == STATS_TOPIC and not self.stats:
            return
        line = message.data.decode() if self.as_json else human(message.payload)
        self.stream.write(line + "\n")
        self.stream.flush()

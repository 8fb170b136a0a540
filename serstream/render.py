"""How events look on a terminal: one line each, or JSON lines for machines."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


def human(event: dict[str, Any]) -> str:
    if event.get("type") == "stats":
        lvl = event.get("level_rms_dbfs")
        return (
            f"[stats] {event.get('source')}  up {event.get('uptime_s', 0):.0f}s  "
            f"frames {event.get('frames_captured')}  overflows {event.get('overflows')}  "
            f"segments {event.get('segments')}  events {event.get('events')}  "
            f"dropped {event.get('dropped')}  level {'-' if lvl is None else f'{lvl:.1f} dBFS'}  "
            f"device {event.get('device', '?')}"
        )
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("wall_end", time.time())))
    kind = "final  " if event.get("final") else "partial"
    return (
        f"{stamp}  {event.get('source')}  #{event.get('segment')}  {kind}  "
        f"{event.get('label', '?'):<9} {event.get('confidence', 0):.2f}  "
        f"[{event.get('start', 0):7.2f}-{event.get('end', 0):7.2f} s]  "
        f"{event.get('processing_ms', 0):.1f} ms"
    )


class Printer:
    """A pipeline sink (and listen's output) writing emotion events, optionally stats."""

    def __init__(self, as_json: bool = False, stats: bool = False, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stats = stats
        self.stream = stream or sys.stdout

    def __call__(self, topic: str, event: dict[str, Any]) -> None:
        if topic == "stats" and not self.stats:
            return
        line = json.dumps(event, separators=(",", ":")) if self.as_json else human(event)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except BrokenPipeError:  # `serstream replay ... | head`
            raise SystemExit(0) from None

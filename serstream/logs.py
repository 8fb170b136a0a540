"""Log lines on stderr: one line per event of note, for a person or for a log collector.

``--log-format text`` (the default) writes ``serstream: LEVEL: message``; ``json`` writes
one JSON object per line (``time``, ``level``, ``logger``, ``message``, and ``traceback``
under ``--log-level debug``), so journald, Loki or Fluent Bit can take the fields as they
are. The one-line error a command ends with goes through the same formatter.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

__all__ = ["LOG_FORMATS", "JsonFormatter", "setup", "error_line"]

LOG_FORMATS = ("text", "json")
_TEXT = "serstream: %(levelname)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line (a traceback, if any, is a field, not more lines)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup(level: str, fmt: str = "text") -> None:
    """Configure the root logger once per process (again: replaces the handler)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


def error_line(message: str, fmt: str = "text") -> None:
    """The error a command exits with: ``serstream: error: ...``, or a JSON line."""
    if fmt == "json":
        record = logging.LogRecord("serstream", logging.ERROR, __file__, 0, message, None, None)
        print(JsonFormatter().format(record), file=sys.stderr)
    else:
        print(f"serstream: error: {message}", file=sys.stderr)

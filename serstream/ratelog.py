"""Log lines that an outsider or a broken model can trigger, without letting them flood the log.

A peer retrying a bad handshake every 100 ms, or a model failing on every segment, would
otherwise write a line each time: the operator must hear of it (once per peer or
fault, at once), and then learn how often it goes on, not read it ten times a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """``log(key, msg, *args)`` writes the first line for each ``key`` at once, then at
    most one line per ``interval`` seconds for that key (saying how many were left
    out), and at most ``burst`` lines per ``interval`` over all keys, so that many
    distinct peers cannot flood it either. Thread-safe; keys seen are kept up to
    ``max_keys`` (the oldest forgotten), so memory stays bounded.
    """

    def __init__(self, logger: logging.Logger, level: int = logging.WARNING, interval: float = 60.0,
                 burst: int = 20, max_keys: int = 1024) -> None:
        self._log = logger
        self._level = level
        self._interval = interval
        self._burst = burst
        self._max_keys = max_keys
        self._last: dict[Hashable, float] = {}  # key -> when its last line was written
        self._held: dict[Hashable, int] = {}  # key -> lines left out since then
        self._others = 0  # lines about keys not yet seen, left out by the burst limit
        self._window_start = -float("inf")
        self._window_lines = 0
        self._lock = threading.Lock()

    def __call__(self, key: Hashable, msg: str, *args: object) -> bool:
        """Log unless it is too soon; True when a line was written."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            if now - self._window_start >= self._interval:
                self._window_start, self._window_lines = now, 0
            if self._window_lines >= self._burst:
                # counted per key only for keys already kept: a stream of new keys (a fresh
                # client key per attempt) must not grow memory past max_keys
                if key in self._last:
                    self._held[key] = self._held.get(key, 0) + 1
                else:
                    self._others += 1
                return False
            self._window_lines += 1
            held = self._held.pop(key, 0)
            others, self._others = self._others, 0
            self._last.pop(key, None)  # re-inserted last: the dict stays in age order
            self._last[key] = now
            while len(self._last) > self._max_keys:
                oldest = next(iter(self._last))
                del self._last[oldest]
                self._held.pop(oldest, None)
        if held:
            msg = f"{msg} (and {held} more like it since the last such line)"
        if others:
            msg = f"{msg} ({others} lines about others were left out)"
        self._log.log(self._level, msg, *args)
        return True

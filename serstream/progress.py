"""Progress of a long replay on stderr: files done, hours of audio, speed, time left.

On a terminal, a bar redrawn in place (erased around any other line written to the
same terminal, so event lines and log lines stay whole); otherwise (a log file, a
service's journal) a plain log line every ``interval`` seconds, and one at the end.
The position inside a file comes from the stamped messages themselves (each emotion
event's ``end``, each stats message's ``stream_s``): the progress is a sink like any other.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import soundfile as sf

from serstream.decode import STDIN
from serstream.events import EMOTION_TOPIC, STATS_TOPIC, Message

__all__ = ["Progress", "audio_seconds"]

log = logging.getLogger("serstream")

_BAR = 24
_REDRAW_S = 0.1


def audio_seconds(paths: Sequence[Path]) -> float:
    """Total length of ``paths`` from their headers (no decoding); unreadable files count 0,
    and so do standard input and FIFOs: a header read here would be gone for the replay."""
    total = 0.0
    for path in paths:
        try:
            if str(path) == STDIN or not stat.S_ISREG(os.stat(path).st_mode):
                continue
            info = sf.info(str(path))
        except Exception:  # a bad file is reported when it is replayed, not here
            continue
        if info.frames > 0 and info.samplerate > 0:
            total += info.frames / info.samplerate
    return total


def _amount(seconds: float, total: float) -> str:
    """Audio in the unit the total reads best in: seconds, minutes or hours."""
    if total < 120:
        return f"{seconds:.0f} of {total:.0f} s"
    if total < 7200:
        return f"{seconds / 60:.1f} of {total / 60:.1f} min"
    return f"{seconds / 3600:.2f} of {total / 3600:.2f} h"


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Counts files and audio as they are done; ``bar`` on a terminal, else log lines."""

    def __init__(self, files: int, audio_s: float, bar: bool, interval: float = 10.0,
                 stream: TextIO | None = None) -> None:
        self.files = files
        self.audio_s = audio_s
        self.bar = bar
        self.interval = interval
        self.stream = stream or sys.stderr
        self.done_files = 0
        self.done_s = 0.0  # audio of the files done
        self.position_s = 0.0  # how far into the current file
        self.started = time.monotonic()
        self._last_draw = -math.inf
        self._shown = False
        self._last_line = ""

    # ------------------------------------------------------------------ input
    def __call__(self, message: Message) -> None:
        """A sink: advance within the current file."""
        p = message.payload
        if message.topic == STATS_TOPIC:
            self.position_s = max(self.position_s, p["stream_s"])
        elif message.topic == EMOTION_TOPIC:
            self.position_s = max(self.position_s, p["end"])
        self.update()

    def file_done(self, seconds: float | None = None) -> None:
        """A file is finished; ``seconds``: its length when not followed through messages."""
        self.done_files += 1
        self.done_s += self.position_s if seconds is None else seconds
        self.position_s = 0.0
        self.update()

    # ------------------------------------------------------------------ output
    def text(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        audio = self.done_s + self.position_s
        speed = audio / elapsed
        total = max(self.audio_s, audio)
        left = (total - audio) / speed if speed > 0 else math.inf
        eta = _clock(left) if math.isfinite(left) else "?"
        return (f"{self.done_files}/{self.files} files, {_amount(audio, total)} of audio, "
                f"{speed:.1f}x real time, {eta} left")

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < (_REDRAW_S if self.bar else self.interval):
            return
        self._last_draw = now
        if self.bar:
            audio = self.done_s + self.position_s
            frac = min(1.0, audio / self.audio_s) if self.audio_s > 0 else self.done_files / max(self.files, 1)
            filled = int(round(frac * _BAR))
            self.stream.write(f"\r[{'#' * filled}{'.' * (_BAR - filled)}] {self.text()}\x1b[K")
            self.stream.flush()
            self._shown = True
        elif (line := self.text()) != self._last_line:
            self._last_line = line
            log.info("progress: %s", line)

    def erase(self) -> None:
        """Clear the bar before another line goes to the terminal (the next update redraws it)."""
        if self.bar and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def around(self, sink: Callable[[Message], None]) -> Callable[[Message], None]:
        """``sink`` with the bar erased before it writes and redrawn after."""
        if not self.bar:
            return sink

        def wrapped(message: Message) -> None:
            self.erase()
            sink(message)
            self.update(force=True)
        return wrapped

    def finish(self) -> None:
        """The last state, always shown; the bar's line is ended."""
        self.update(force=True)
        if self.bar:
            self.stream.write("\n")
            self.stream.flush()
            self._shown = False


class EraseBar(logging.Filter):
    """On the log handler: a log line first clears the progress bar."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress.erase()
        return True

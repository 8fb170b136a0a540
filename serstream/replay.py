"""Audio files as a simulated microphone.

A thread decodes the file block by block and writes it into the same ring buffer the
PortAudio callback would fill, at real-time pace (``speed=1``), N times faster, or as
fast as the consumer drains it (``speed=0``). Unlike a microphone, a replay never
drops audio: when the ring is full the replay thread waits, since nothing is lost by
waiting for a file.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serstream.decode import STDIN, AudioStream, open_audio
from serstream.errors import AudioFileError
from serstream.events import FileHealth
from serstream.limits import bounded, check
from serstream.ring import RingBuffer

__all__ = ["FileSource", "ReplayConfig"]


@dataclass(frozen=True)
class ReplayConfig:
    """How a file stands in for a microphone.

    ``speed``: 1 is real time, N is N times faster, 0 is as fast as the pipeline takes
    it. ``block_ms``: the size of the paced writes (a microphone's callback size).
    ``ring_seconds``: as for a microphone; a full ring makes the replay wait, never lose.
    """

    speed: float = bounded(1.0, 0.0, 1000.0, "x real time")
    block_ms: int = bounded(20, 1, 1000, "ms")
    ring_seconds: float = bounded(4.0, 0.1, 600.0, "s")

    def __post_init__(self) -> None:
        check(self)


class FileSource:
    """Stream one file into a ring. Header errors surface in the constructor;
    errors met while decoding are kept in ``error`` and end the stream early."""

    def __init__(
        self,
        path: str | Path,
        sr: int = 16000,
        config: ReplayConfig | None = None,
        source_id: str | None = None,
    ) -> None:
        config = config or ReplayConfig()
        speed = config.speed
        self.path = Path(path)
        self.source_id = source_id or ("stdin" if str(path) == STDIN else str(path))
        self.sample_rate = sr
        self.channels = 1
        self.speed = speed
        self._block = max(1, sr * config.block_ms // 1000)
        # as fast as possible: few large decode calls; paced: small ones, no latency added
        decode_block = self._block * 8 if speed > 0 else 1 << 16
        self._stream: AudioStream = open_audio(self.path, sr, blocksize=decode_block)
        self.ring = RingBuffer(int(sr * config.ring_seconds), 1)
        self.error: AudioFileError | None = None
        self.generation = 0
        self._done = threading.Event()
        self._stop = threading.Event()
        self._data = threading.Event()  # set by the producer after each write: no polling
        self._thread = threading.Thread(target=self._produce, name=f"replay:{self.path.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finished(self) -> bool:
        return self._done.is_set()

    def poll(self) -> bool:
        """Files do not fail the way devices do: nothing to watch."""
        return False

    def wait(self, timeout: float) -> None:
        """Block until the producer wrote something (a file thread may signal; a
        PortAudio callback may not, which is why MicSource polls instead)."""
        self._data.wait(timeout)
        self._data.clear()

    def close(self) -> None:
        self._stop.set()
        # the producer checks the flag between blocks of a few ms; a daemon thread, so
        # one stuck in a decode call cannot hold the process past a stop
        self._thread.join(timeout=1)

    def health(self) -> FileHealth:
        return FileHealth(non_finite_samples=self._stream.non_finite)

    def _produce(self) -> None:
        t0 = time.monotonic()
        written = 0
        # paced: microphone-sized blocks; as fast as possible: whole decoded chunks
        block = self._block if self.speed > 0 else 1 << 30
        try:
            for chunk in self._stream:
                for i in range(0, chunk.shape[0], block):
                    piece = chunk[i : i + block]
                    if self.speed > 0:
                        due = t0 + (written + piece.shape[0]) / (self.sample_rate * self.speed)
                        delay = due - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    self._write_all(piece)
                    written += piece.shape[0]
                    if self._stop.is_set():
                        return
        except AudioFileError as exc:
            self.error = exc
        finally:
            self._done.set()
            self._data.set()

    def _write_all(self, piece: np.ndarray) -> None:
        off = 0
        while off < piece.shape[0]:
            # only what fits: a file waits for room, it never overflows (nothing is lost)
            free = self.ring.free
            n = self.ring.write(piece[off : off + free]) if free else 0
            off += n
            if n:
                self._data.set()
            if off < piece.shape[0]:
                if self._stop.is_set():
                    return
                time.sleep(0.002)  # ring full: the consumer is a chunk behind

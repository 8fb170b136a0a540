"""Single-producer / single-consumer ring buffer for audio frames.

The producer is the PortAudio callback (or a replay thread standing in for it); the
consumer is the processing thread. The callback must never block, lock or allocate a
buffer, so: the storage is preallocated, each side owns one index (the GIL makes a
Python int store atomic), data is copied *before* the write index moves, and a write
that does not fit is cut short and counted, never waited on.

Each write also records when it happened, so the pipeline can tell, for any sample,
the moment it entered the pipeline: that is what end-to-end latency is measured from.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["RingBuffer"]


class RingBuffer:
    """Fixed-capacity FIFO of ``(frames, channels)`` float32 audio.

    Parameters
    ----------
    capacity : int
        Frames it can hold; size it for the longest stall the consumer may have
        (e.g. 4 s of audio) so a slow model costs overflows, not a crash.
    channels : int
    stamps : int
        How many recent writes keep their arrival time.
    """

    def __init__(self, capacity: int, channels: int = 1, stamps: int = 2048) -> None:
        if capacity <= 0 or channels <= 0:
            raise ValueError("capacity and channels must be positive")
        self.capacity = int(capacity)
        self.channels = int(channels)
        self._data = np.zeros((self.capacity, self.channels), dtype=np.float32)
        self._w = 0  # total frames ever written (producer-owned)
        self._r = 0  # total frames ever read (consumer-owned)
        self.dropped = 0  # frames the producer could not fit (producer-owned)
        self._stamp_end = np.zeros(stamps, dtype=np.int64)
        self._stamp_time = np.zeros(stamps, dtype=np.float64)
        self._stamp_n = 0

    # producer side -----------------------------------------------------------
    def write(self, block: np.ndarray, now: float | None = None) -> int:
        """Copy as much of ``block`` as fits; return frames written. Never blocks."""
        frames = block.shape[0]
        free = self.capacity - (self._w - self._r)
        n = frames if frames <= free else free
        if n < frames:
            self.dropped += frames - n
        if n > 0:
            start = self._w % self.capacity
            first = min(n, self.capacity - start)
            if block.ndim == 1:
                self._data[start : start + first, 0] = block[:first]
                if first < n:
                    self._data[: n - first, 0] = block[first:n]
            else:
                self._data[start : start + first] = block[:first]
                if first < n:
                    self._data[: n - first] = block[first:n]
            w = self._w + n
            k = self._stamp_n % self._stamp_end.shape[0]
            self._stamp_end[k] = w
            self._stamp_time[k] = time.monotonic() if now is None else now
            self._stamp_n += 1
            self._w = w  # publish last, after the data is in place
        return n

    @property
    def free(self) -> int:
        return self.capacity - (self._w - self._r)

    # consumer side -----------------------------------------------------------
    @property
    def available(self) -> int:
        return self._w - self._r

    @property
    def frames_written(self) -> int:
        return self._w

    @property
    def frames_read(self) -> int:
        return self._r

    def read(self, out: np.ndarray) -> int:
        """Fill ``out`` (``(n, channels)``) with up to ``n`` frames; return frames read."""
        n = min(out.shape[0], self._w - self._r)
        if n <= 0:
            return 0
        start = self._r % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._data[start : start + first]
        if first < n:
            out[first:n] = self._data[: n - first]
        self._r += n
        return n

    def arrival_time(self, frame_index: int) -> float | None:
        """Monotonic time at which frame ``frame_index`` (0-based, in write order) was
        written, or ``None`` if that write is too old to be remembered."""
        count = min(self._stamp_n, self._stamp_end.shape[0])
        if count == 0:
            return None
        size = self._stamp_end.shape[0]
        newest = self._stamp_n - 1
        # walk back from the newest write; the window is small and this runs per event
        for i in range(count):
            k = (newest - i) % size
            end = self._stamp_end[k]
            prev = self._stamp_end[(k - 1) % size] if i + 1 < count else -1
            if prev <= frame_index < end:
                return float(self._stamp_time[k])
            if frame_index >= end:
                return float(self._stamp_time[k]) if i == 0 else None
        return None

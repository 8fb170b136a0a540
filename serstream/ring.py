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
        self._stamp_start = np.zeros(stamps, dtype=np.int64)
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
            self._stamp_start[k] = self._w
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
        written; ``None`` if that write is too old to be remembered. A frame not written
        yet gets the newest write's time."""
        size = self._stamp_end.shape[0]
        count = min(self._stamp_n, size)
        if count == 0:
            return None
        first = self._stamp_n - count  # logical index of the oldest remembered write
        if frame_index < self._stamp_start[first % size]:
            return None
        ends = self._stamp_end
        lo, hi = 0, count  # binary search: first remembered write ending after the frame
        while lo < hi:
            mid = (lo + hi) // 2
            if ends[(first + mid) % size] > frame_index:
                hi = mid
            else:
                lo = mid + 1
        return float(self._stamp_time[(first + min(lo, count - 1)) % size])

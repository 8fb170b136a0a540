"""The SPSC ring buffer: order, wrap-around, overflow counting, arrival stamps, and a
real producer thread racing a consumer."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from serstream.ring import RingBuffer


def test_fifo_order_across_wraparound():
    r = RingBuffer(10, 1)
    out = np.zeros((10, 1), np.float32)
    seq = np.arange(1000, dtype=np.float32)
    got, pos, refused = [], 0, 0
    rng = np.random.default_rng(0)
    while pos < len(seq) or r.available:
        k = int(rng.integers(1, 8))
        if pos < len(seq):
            piece = seq[pos : pos + k]
            n = r.write(piece)
            refused += len(piece) - n
            pos += n
        n = r.read(out[: int(rng.integers(1, 10))])
        got.extend(out[:n, 0])
    assert np.array_equal(np.array(got), seq)
    assert r.dropped == refused > 0  # what did not fit was counted, and retried here


def test_overflow_is_counted_not_blocking():
    r = RingBuffer(8, 2)
    assert r.write(np.ones((6, 2), np.float32)) == 6
    assert r.write(np.ones((5, 2), np.float32)) == 2
    assert r.dropped == 3 and r.available == 8 and r.free == 0
    assert r.write(np.ones((4, 2), np.float32)) == 0 and r.dropped == 7


def test_arrival_time_maps_frames_to_writes():
    r = RingBuffer(100, 1)
    r.write(np.zeros(10, np.float32), now=1.0)
    r.write(np.zeros(10, np.float32), now=2.0)
    assert r.arrival_time(0) == 1.0 and r.arrival_time(9) == 1.0
    assert r.arrival_time(10) == 2.0 and r.arrival_time(19) == 2.0


def test_threaded_producer_consumer_lose_nothing_when_sized():
    r = RingBuffer(4096, 1)
    total = 200_000
    data = np.arange(total, dtype=np.float32) % 65536

    def produce():
        pos = 0
        while pos < total:
            pos += r.write(data[pos : pos + 256])

    t = threading.Thread(target=produce)
    t.start()
    out = np.zeros((1000, 1), np.float32)
    got = []
    while len(got) < total:
        n = r.read(out)
        got.extend(out[:n, 0].tolist())
    t.join()
    assert np.array_equal(np.array(got, dtype=np.float32), data)


@pytest.mark.parametrize("bad", [(0, 1), (10, 0)])
def test_rejects_bad_sizes(bad):
    with pytest.raises(ValueError):
        RingBuffer(*bad)


def test_arrival_time_forgets_old_writes_and_estimates_future_ones():
    r = RingBuffer(10_000, 1, stamps=4)
    for i in range(6):  # writes of 10 frames at t = 0..5; only the last 4 remembered
        r.write(np.zeros(10, np.float32), now=float(i))
    assert r.arrival_time(5) is None and r.arrival_time(19) is None
    assert r.arrival_time(20) == 2.0 and r.arrival_time(35) == 3.0 and r.arrival_time(59) == 5.0
    assert r.arrival_time(60) == 5.0  # not written yet

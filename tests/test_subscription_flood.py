"""A client flooding the daemon with subscriptions to topics it never publishes: each
refused and counted, the flooding connection cut (and cut again each time it comes
back), while a well-behaved subscriber keeps getting every message.

Memory under a flood is measured in bench/ (an RSS figure is not for a test on a shared
machine); what bounds it is asserted here: refused subscriptions are never kept, and a
connection cannot send more than a fixed number of them."""

from __future__ import annotations

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from procs import EXAMPLES, Lines, free_endpoint, spawn
from serstream.client import Subscriber
from serstream.peers import MAX_REFUSED


def _flood(ep: str, cuts: int, limit: float = 120) -> tuple[int, int]:
    """Send distinct subscriptions from a raw XSUB socket until the daemon has cut the
    connection ``cuts`` times (libzmq reconnects it each time). Returns (sent, cut)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XSUB)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    sock.connect(ep)
    sent = cut = 0
    deadline = time.monotonic() + limit
    try:
        while cut < cuts and time.monotonic() < deadline:
            for _ in range(200):
                sock.send(b"\x01flood-%d" % sent, flags=zmq.NOBLOCK)
                sent += 1
            while cut < cuts and monitor.poll(0):  # one poll may hold two disconnections
                recv_monitor_message(monitor)
                cut += 1
            time.sleep(0.001)
    except zmq.Again:  # its queue is full: nothing leaves it any more
        pass
    finally:
        sock.disable_monitor()
        monitor.close(0)
        sock.close(0)
        ctx.term()
    return sent, cut


def test_a_subscription_flood_is_refused_counted_and_cut(tiny):
    ep = free_endpoint()
    clips = sorted(EXAMPLES.glob("*.wav"))
    daemon = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "1", "--quiet", "--stats-interval", "0.2",
                   *clips)
    err = Lines(daemon.stderr)
    with Subscriber(ep, topics=("emotion", "stats")) as sub:
        first = sub.recv(timeout=60)
        assert first is not None, err.text()
        sent, cut = _flood(ep, cuts=3)
        assert cut == 3, f"the daemon never cut the flooding connection ({sent} subscriptions sent)"
        got = [first]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # stats after the flood, with what it counted
            m = sub.recv(timeout=1)
            if m is not None:
                got.append(m)
                if m["topic"] == "stats" and m["peers_cut"] >= 3:
                    break
        daemon.terminate()
        daemon.wait(timeout=30)
    stderr = err.text()
    assert daemon.returncode == 0, stderr
    stats = [m for m in got if m["topic"] == "stats"]
    last = stats[-1]
    assert last["peers_cut"] >= 3, last
    # every flood message the daemon read was refused, and each connection was cut just past the limit
    assert last["subscriptions_refused"] >= 3 * (MAX_REFUSED + 1), last
    assert last["subscriptions"] == 2, last  # ours, emotion and stats; nothing of the flood's kept
    # the well-behaved subscriber lost nothing while the flood went on
    assert sub.gaps == 0 and [m["seq"] for m in stats] == list(range(stats[0]["seq"], stats[0]["seq"] + len(stats)))
    cut_lines = [ln for ln in stderr.splitlines() if "cut off the subscriber" in ln]
    assert len(cut_lines) == 1, stderr  # said once, not once per reconnection
    assert "emotion and stats" in cut_lines[0]

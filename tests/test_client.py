"""serstream.client against a real ZeroMQ publisher: gaps, malformed and oversized messages."""

from __future__ import annotations

import json
import time

import zmq

from procs import free_endpoint
from serstream.client import MAX_MESSAGE_BYTES, Subscriber
from serstream.publish import PublishConfig, Publisher, is_loopback_endpoint


def _settle(sub: Subscriber, pub: Publisher) -> None:
    assert pub.wait_for_subscriber(5)


def test_gaps_and_bad_messages_are_counted_and_skipped():
    ep = free_endpoint()
    pub = Publisher(PublishConfig(bind=ep))
    with Subscriber(ep, topics=("emotion",)) as sub:
        _settle(sub, pub)
        pub.publish("emotion", {"type": "emotion", "n": 0})
        raw = pub._sock
        raw.send_multipart([b"emotion", b"{not json"])
        raw.send_multipart([b"emotion", b"[1, 2, 3]"])
        raw.send_multipart([b"emotion", b"x", b"three frames"])
        raw.send_multipart([b"emotion", b"x" * (MAX_MESSAGE_BYTES + 10)])
        pub._seq["emotion"] = 5  # pretend 4 messages were lost on the way
        pub.publish("emotion", {"type": "emotion", "n": 1})
        got = list(sub.events(timeout=2))
        assert [e["n"] for e in got] == [0, 1]
        assert sub.rejected == 4
        assert sub.gaps == 1 and sub.lost == 4
    pub.close()


def test_slow_subscriber_never_blocks_publisher():
    ep = free_endpoint()
    pub = Publisher(PublishConfig(bind=ep, hwm=10))
    ctx = zmq.Context.instance()
    stuck = ctx.socket(zmq.SUB)  # subscribes, then never reads
    stuck.setsockopt(zmq.RCVHWM, 10)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(ep)
    assert pub.wait_for_subscriber(5)
    t0 = time.monotonic()
    for i in range(20000):
        pub.publish("emotion", {"i": i, "pad": "x" * 200})
    assert time.monotonic() - t0 < 5
    stuck.close(0)
    pub.close()


def test_seq_is_per_topic():
    ep = free_endpoint()
    pub = Publisher(PublishConfig(bind=ep))
    with Subscriber(ep, topics=("emotion", "stats")) as sub:
        _settle(sub, pub)
        for topic in ("emotion", "stats", "emotion", "stats", "stats"):
            pub.publish(topic, {"type": topic})
        got = [(e["topic"], e["seq"]) for e in sub.events(timeout=1)]
    assert got == [("emotion", 0), ("stats", 0), ("emotion", 1), ("stats", 1), ("stats", 2)]
    assert all(isinstance(json.dumps(g), str) for g in got)
    pub.close()


def test_loopback_detection():
    assert is_loopback_endpoint("tcp://127.0.0.1:5556")
    assert is_loopback_endpoint("tcp://localhost:1")
    assert is_loopback_endpoint("tcp://[::1]:5556")
    assert is_loopback_endpoint("ipc:///tmp/x")
    assert not is_loopback_endpoint("tcp://0.0.0.0:5556")
    assert not is_loopback_endpoint("tcp://*:5556")
    assert not is_loopback_endpoint("tcp://192.0.2.1:5556")

"""serstream.client against a real ZeroMQ publisher: gaps, malformed and oversized messages."""

from __future__ import annotations

import json
import logging
import threading

import zmq

from messages import event, stats
from procs import free_endpoint
from serstream.client import MAX_MESSAGE_BYTES, Subscriber
from serstream.events import (
    EMOTION_TOPIC,
    SCHEMA_VERSION,
    STATS_TOPIC,
    Message,
    Stamper,
)
from serstream.publish import PublishConfig, Publisher, is_loopback_endpoint


def _settle(sub: Subscriber, pub: Publisher) -> None:
    assert pub.wait_for_subscriber(5)


def test_gaps_and_bad_messages_are_counted_and_skipped():
    ep = free_endpoint()
    pub = Publisher(PublishConfig(bind=ep))
    stamper = Stamper()
    with Subscriber(ep, topics=(EMOTION_TOPIC,)) as sub:
        _settle(sub, pub)
        assert pub.send(stamper.stamp(event(0)))
        raw = pub._outbox  # straight onto the wire, unstamped
        raw.send_multipart([b"emotion", b"{not json"])
        raw.send_multipart([b"emotion", b"[1, 2, 3]"])
        raw.send_multipart([b"emotion", b"x", b"three frames"])
        raw.send_multipart([b"emotion", b"x" * (MAX_MESSAGE_BYTES + 10)])
        for n in range(4):  # stamped but lost on the way: seq 1-4 never arrive
            stamper.stamp(event(100 + n))
        assert pub.send(stamper.stamp(event(1)))
        got = list(sub.events(timeout=2))
        assert [e["segment"] for e in got] == [0, 1]
        assert [e["seq"] for e in got] == [0, 5]
        assert sub.rejected == 4
        assert sub.gaps == 1 and sub.lost == 4
    pub.close()


def test_another_schema_version_is_delivered_and_said_once_per_session(caplog):
    ep = free_endpoint()
    pub = Publisher(PublishConfig(bind=ep))
    with Subscriber(ep, topics=(EMOTION_TOPIC,)) as sub:
        _settle(sub, pub)
        raw = pub._outbox  # straight onto the wire: an older daemon's messages
        for seq in range(3):
            raw.send_multipart([b"emotion", json.dumps({"schema": 1, "session": "old", "seq": seq}).encode()])
        assert pub.send(Stamper().stamp(event(0)))  # this version's: no word about it
        with caplog.at_level(logging.WARNING, logger="serstream.client"):
            got = list(sub.events(timeout=2))
        assert [e["schema"] for e in got] == [1, 1, 1, SCHEMA_VERSION]
        assert sub.other_schema == 1 and sub.rejected == 0
        said = [r.getMessage() for r in caplog.records if "schema" in r.getMessage()]
        assert len(said) == 1 and "session old sends schema 1" in said[0], said
    pub.close()


def test_slow_subscriber_never_blocks_publisher():
    """A subscriber that never reads: sending returns every time (the publisher's
    thread is never held), and that subscriber loses what its queue cannot hold."""
    ep = free_endpoint()
    pub = Publisher(PublishConfig(bind=ep, hwm=10))
    ctx = zmq.Context.instance()
    stuck = ctx.socket(zmq.SUB)  # subscribes, then never reads
    stuck.setsockopt(zmq.RCVHWM, 10)
    stuck.setsockopt(zmq.SUBSCRIBE, b"")
    stuck.connect(ep)
    assert pub.wait_for_subscriber(5)
    message = Message("emotion", {}, b"x" * 2000)
    sent = 50000  # 100 MB: far more than the socket buffers between the two can hold (tcp_rmem max 32 MB)
    results: list[bool] = []
    sender = threading.Thread(target=lambda: results.extend(pub.send(message) for _ in range(sent)))
    sender.start()
    # generous: a blocked send would never return at all; load only makes it slower
    sender.join(timeout=120)
    assert not sender.is_alive(), "publishing blocked on a subscriber that does not read"
    # each send returned; one the publisher thread could not take at once is counted
    assert len(results) == sent and results.count(False) == pub.unsent
    received = 0
    while stuck.poll(500, zmq.POLLIN):
        stuck.recv_multipart()
        received += 1
    assert 0 < received < sent  # it got what its queues held, and lost the rest
    stuck.close(0)
    pub.close()


def test_seq_is_per_topic_and_per_session():
    ep = free_endpoint()
    pub = Publisher(PublishConfig(bind=ep))
    first, second = Stamper(), Stamper()  # two daemon sessions, one after the other
    body = stats()
    with Subscriber(ep, topics=(EMOTION_TOPIC, STATS_TOPIC)) as sub:
        _settle(sub, pub)
        for b in (event(0), body, event(1), body, body):
            pub.send(first.stamp(b))
        for b in (body, event(0)):
            pub.send(second.stamp(b))
        got = [(e["session"], e["topic"], e["seq"]) for e in sub.events(timeout=1)]
    s1, s2 = first.session, second.session
    assert s1 != s2
    assert got == [(s1, "emotion", 0), (s1, "stats", 0), (s1, "emotion", 1), (s1, "stats", 1), (s1, "stats", 2),
                   (s2, "stats", 0), (s2, "emotion", 0)]
    # a new session starting again from 0 is not a loss
    assert sub.gaps == 0 and sub.lost == 0
    pub.close()


def test_loopback_detection():
    assert is_loopback_endpoint("tcp://127.0.0.1:5556")
    assert is_loopback_endpoint("tcp://localhost:1")
    assert is_loopback_endpoint("tcp://[::1]:5556")
    assert is_loopback_endpoint("ipc:///tmp/x")
    assert not is_loopback_endpoint("tcp://0.0.0.0:5556")
    assert not is_loopback_endpoint("tcp://*:5556")
    assert not is_loopback_endpoint("tcp://192.0.2.1:5556")

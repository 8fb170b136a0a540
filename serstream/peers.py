"""Who is connected to the publisher, and what each connection may make the daemon hold.

libzmq keeps every distinct subscription a connection sends, in a trie, until the
connection ends, and an XPUB hands each one to the application too. Anyone who can
connect (a local user on the default loopback bind, anyone on a network bind, any
holder of the server's Curve key) could therefore grow the daemon without bound by
subscribing to ever new topics: a plain XSUB loop took it from 199 MB to 1.8 GB in 20 s
and stalled its publishing for seconds. So the publisher's socket runs in manual mode
(``ZMQ_XPUB_MANUAL``) and :class:`PeerGuard` decides what each notification may do:

- a subscription to a topic the daemon publishes, or a prefix of one (``""`` is "all"),
  is applied: at most 13 per connection;
- anything else is refused, counted, and charged to the connection it came from (each
  notification carries its connection's file descriptor, ``__fd``); a connection that
  exceeds ``max_refused`` is cut (its TCP socket shut down; libzmq then drops it and
  all it held), so no connection holds more than ``max_refused`` messages of at most
  ``MAX_MESSAGE_BYTES``;
- failed handshakes (socket monitor events) are counted and logged once per peer
  address, rate-limited: a client with the wrong server key, without encryption, or
  (logged by the ZAP handler, :mod:`serstream.security`) with a key not allowed in.

Everything here runs on the publisher's own thread (:mod:`serstream.publish`), which
services the socket however busy the pipeline is.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from serstream.events import TOPICS
from serstream.handshake import FAILED, failure_reason, hung_up
from serstream.ratelog import RateLimitedLog

__all__ = ["PeerGuard", "MAX_REFUSED", "MAX_MESSAGE_BYTES", "MONITORED_EVENTS"]

log = logging.getLogger(__name__)

_IN_PROCESS = -1  # inproc:// subscribers carry no fd: one pseudo-connection for them all
MAX_REFUSED = 100  # refused messages a connection may send before it is cut; a subscriber needs none
MAX_MESSAGE_BYTES = 512  # largest message a subscriber may send (a subscription is a topic: a few bytes)

MONITORED_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | sum(FAILED)


@dataclass
class _Connection:
    address: str  # "ip:port" (tcp), "local" (ipc), "" when it could not be read
    topics: set[bytes] = field(default_factory=set)
    refused: int = 0
    cut: bool = False
    gone: bool = False  # ended; what is still queued from it changes nothing


class PeerGuard:
    """What each connection of a manual XPUB may subscribe to, and who failed to connect.

    ``encrypted`` only words the log lines. The counters are read by the pipeline's
    thread for stats (plain ints: a stale read is harmless).
    """

    def __init__(self, topics: tuple[str, ...] = TOPICS, max_refused: int = MAX_REFUSED,
                 encrypted: bool = False, on_topic: Callable[[bytes, bool], None] | None = None) -> None:
        self.topics = topics
        self.allowed = frozenset(t.encode()[:i] for t in topics for i in range(len(t) + 1))
        self.max_refused = max_refused
        self.encrypted = encrypted
        self.refused = 0  # messages refused (topics never published, upstream data)
        self.cut = 0  # connections cut for sending too many of them
        self.handshakes_failed = 0
        self._connections: dict[int, _Connection] = {}
        # how many connections hold each topic, for on_topic(topic, held): a proxy asks
        # its daemons for a topic while someone downstream wants it, and only then
        self._holders: dict[bytes, int] = {}
        self._on_topic = on_topic
        # handshake failures (reason, verb) waiting for their DISCONNECTED events, oldest first (None: a key
        # refused by the ZAP handler, which says so itself); a queue, not one slot, because
        # retrying peers interleave their failures and ends
        self._failures: collections.deque[tuple[str, str] | None] = collections.deque(maxlen=64)
        self._log = RateLimitedLog(log)

    @property
    def subscriptions(self) -> int:
        """Topic subscriptions currently held by connected subscribers."""
        return sum(len(c.topics) for c in list(self._connections.values()))

    def counts(self) -> dict[str, int]:
        """What stats report of the subscribers, by the names the schema gives them."""
        return {"subscriptions": self.subscriptions, "subscriptions_refused": self.refused,
                "peers_cut": self.cut, "handshakes_failed": self.handshakes_failed}

    # ------------------------------------------------------------------ subscriptions
    def on_message(self, sock: zmq.Socket, frame: zmq.Frame) -> None:
        """One (un)subscription or upstream message, just received from ``sock``."""
        data = frame.bytes
        fd = _source_fd(frame)
        if data[:1] in (b"\x00", b"\x01") and data[1:] in self.allowed:
            subscribe, topic = data[0] == 1, data[1:]
            # manual mode: this applies it to the connection the notification came from
            sock.setsockopt(zmq.SUBSCRIBE if subscribe else zmq.UNSUBSCRIBE, topic)
            conn = self._connection(fd if fd is not None else _IN_PROCESS)
            if not conn.gone and subscribe and topic not in conn.topics:
                conn.topics.add(topic)
                self._held(topic, +1)
            elif not conn.gone and not subscribe and topic in conn.topics:
                conn.topics.discard(topic)
                self._held(topic, -1)
            return
        if fd is None:
            return  # libzmq's own unsubscriptions for a connection that has ended
        self.refused += 1
        conn = self._connection(fd)
        conn.refused += 1
        if conn.refused > self.max_refused and not conn.cut and not conn.gone:
            conn.cut = True
            self.cut += 1
            self._log(("cut", _host(conn.address)),
                      "cut off the subscriber at %s: it sent more than %d subscriptions to topics this daemon "
                      "does not publish (it publishes %s)", conn.address or "?", self.max_refused,
                      " and ".join(self.topics))
            _shut_down(fd, conn.address)

    def _connection(self, fd: int) -> _Connection:
        conn = self._connections.get(fd)
        if conn is None:  # its ACCEPTED event is still on the way
            conn = self._connections[fd] = _Connection(_peer_address(fd) if fd != _IN_PROCESS else "inproc")
        return conn

    def _held(self, topic: bytes, change: int) -> None:
        before = self._holders.get(topic, 0)
        self._holders[topic] = before + change
        if self._on_topic is not None and (before == 0) != (before + change == 0):
            self._on_topic(topic, before == 0)

    # ------------------------------------------------------------------ monitor
    def on_event(self, event: int, value: int) -> None:
        """A socket monitor event (``value``: the fd, or the failure's code)."""
        if event == zmq.EVENT_ACCEPTED:
            conn = self._connections.get(value)
            if conn is None or conn.gone:  # (a live one was made by a message that overtook this event)
                self._connections[value] = _Connection(_peer_address(value))
        elif event in FAILED:
            self.handshakes_failed += 1
            # a key refused by our ZAP handler is explained there, with its fingerprint
            reason = failure_reason(event, value, encrypted=self.encrypted, side="daemon")
            self._failures.append(None if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH else
                                  (reason, "lost" if hung_up(event, value) else "refused"))
        elif event == zmq.EVENT_DISCONNECTED:
            # kept, marked gone, until its fd is accepted again: messages it sent may
            # still be queued, and must not be charged to whoever gets the fd next
            conn = self._connections.get(value)
            if conn is not None:
                conn.gone = True
                for topic in conn.topics:
                    self._held(topic, -1)
                conn.topics.clear()
            failure = self._failures.popleft() if self._failures else None
            if failure is not None:  # libzmq reports a failure, then the end of its connection
                reason, how = failure
                address = conn.address if conn else ""
                # (a connection refused at once can be gone before its address was read)
                self._log(("handshake", _host(address), reason), "%s a connection from %s: %s", how,
                          address or "a peer gone before its address could be read", reason)


def _source_fd(frame: zmq.Frame) -> int | None:
    try:
        return int(frame.get("__fd"))
    except (zmq.ZMQError, KeyError, ValueError, TypeError):
        return None


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0] if address.count(":") else address


def _peer_address(fd: int) -> str:
    """``ip:port`` of the peer behind libzmq's ``fd`` ("" if it is gone already)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as s:
            if s.family == socket.AF_UNIX:
                return "local"
            host, port = s.getpeername()[:2]
            return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    except OSError:
        return ""


def _shut_down(fd: int, address: str) -> None:
    """End libzmq's connection on ``fd`` the way a peer hanging up would: libzmq sees the
    end of the stream, drops the connection and everything it held, and closes ``fd``
    itself. Only if ``fd`` is still that peer's: an fd reused since is left alone."""
    with contextlib.suppress(OSError):
        if not address or _peer_address(fd) != address:  # gone before it was known, or reused
            return
        with socket.socket(fileno=os.dup(fd)) as s:
            s.shutdown(socket.SHUT_RDWR)

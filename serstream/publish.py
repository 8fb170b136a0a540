"""ZeroMQ publisher: ``[topic, json]`` multipart messages on an XPUB socket, served by a
thread of its own.

Sending behaves as PUB: each subscriber has its own queue of ``hwm`` messages, and a
slow or stuck one loses its own messages (it sees a gap in the per-topic sequence
number), never stalls the daemon and never costs the others anything. ZeroMQ drops
those silently, so the daemon cannot count them; subscribers can.

The socket is XPUB in manual mode because what arrives from subscribers needs
watching (see :mod:`serstream.peers`): subscriptions to topics the daemon does not
publish are refused, a connection that floods them is cut, failed handshakes are
counted. That work must go on however busy the pipeline is (a model call can take a
second), so one thread owns the socket and does nothing else: it forwards what the
pipeline sends it over an in-process pipe, applies or refuses subscriptions, and reads
the socket monitor, a bounded batch of each per turn, so neither a flood of
subscriptions nor a burst of events can starve the other. For ``serstream proxy`` it also
relays an upstream XSUB socket: what the daemons send is published as it is, and up goes
a subscription to each topic someone holds here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import recv_monitor_message

from serstream.errors import UserError
from serstream.events import Message
from serstream.limits import bounded, check
from serstream.peers import MAX_MESSAGE_BYTES, MONITORED_EVENTS, PeerGuard
from serstream.security import AllowList, CurveServer, fingerprint

__all__ = ["PublishConfig", "Publisher", "is_loopback_endpoint", "needs_ipv6"]

log = logging.getLogger(__name__)

_BATCH = 256  # messages of one kind handled per turn of the publisher thread
_SUBSCRIBER_QUEUE = 100  # messages a subscriber may have in flight towards us (it needs a few)
_HANDOFF_QUEUE = 10_000  # messages on their way from the pipeline to the publisher thread


@dataclass(frozen=True)
class PublishConfig:
    """Where and how the daemon publishes.

    ``bind`` defaults to loopback: publishing to the network is an explicit choice.
    ``hwm`` is how many messages ZeroMQ queues for each subscriber before that
    subscriber (and only it) starts losing them. ``linger_ms`` bounds how long closing
    waits for queued messages, so shutdown never hangs on a stuck subscriber.
    """

    bind: str = "tcp://127.0.0.1:5556"
    hwm: int = bounded(1000, 1, 1_000_000, "messages")
    linger_ms: int = bounded(500, 0, 1000, "ms")
    curve: CurveServer | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check(self)


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    if not endpoint.startswith("tcp://"):
        return True
    host = _host(endpoint)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', interface names, host names: reachable from outside


def needs_ipv6(endpoint: str) -> bool:
    """A tcp:// endpoint naming an IPv6 address (``tcp://[::1]:5556``): libzmq binds
    and connects to those only on a socket with IPv6 enabled."""
    if not endpoint.startswith("tcp://"):
        return False
    try:
        return ipaddress.ip_address(_host(endpoint)).version == 6
    except ValueError:
        return False


def _host(endpoint: str) -> str:
    return endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")


def peer_counts(publisher: Publisher | None) -> dict[str, int]:
    """The subscriber counters stats carry: the publisher's guard's, or zeros without one."""
    return (publisher.guard if publisher is not None else PeerGuard()).counts()


class Publisher:
    """The daemon's publishing socket; :meth:`send` is called from one thread (the
    pipeline's), the socket itself lives on the publisher's thread."""

    def __init__(self, config: PublishConfig, context: zmq.Context | None = None,
                 upstream: zmq.Socket | None = None) -> None:
        """``upstream``: an XSUB socket, connected (``serstream proxy``): what it receives is
        published as it is, and it is subscribed to each topic while a subscriber here
        holds it. From now on only the publisher's thread uses it; its owner closes it
        after :meth:`close`."""
        self.config = config
        self._upstream = upstream
        self.forwarded = 0  # messages from upstream published here
        # a context of its own: its ZAP handler is this publisher's, and closing it
        # waits (up to linger_ms) until what was sent is on the wire
        self._own_context = context is None
        self._ctx = context or zmq.Context()
        self.unsent = 0  # messages the publisher thread could not take: it was stuck
        self.guard = PeerGuard(encrypted=config.curve is not None,
                               on_topic=None if upstream is None else self._ask_upstream)
        sock = self._ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, config.hwm)
        sock.setsockopt(zmq.LINGER, config.linger_ms)
        sock.setsockopt(zmq.XPUB_MANUAL, 1)  # every subscription passes through the guard
        sock.setsockopt(zmq.RCVHWM, _SUBSCRIBER_QUEUE)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        if needs_ipv6(config.bind):
            sock.setsockopt(zmq.IPV6, 1)
        self._auth: AllowList | None = None
        try:
            if config.curve is not None:
                self._auth = config.curve.apply(sock, self._ctx)
            sock.bind(config.bind)
        except zmq.ZMQError as exc:
            self._abandon(sock)
            if exc.errno == zmq.EADDRINUSE:
                raise UserError(f"cannot bind {config.bind}: address already in use "
                                "(is another serstream running? choose --bind)") from None
            raise UserError(f"cannot bind {config.bind}: {exc.strerror}") from None
        except BaseException:
            self._abandon(sock)
            raise
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        monitor = sock.get_monitor_socket(MONITORED_EVENTS)
        inbox = f"inproc://serstream-publisher-{id(self):x}"
        self._inbox = self._ctx.socket(zmq.PAIR)
        self._inbox.bind(inbox)
        self._outbox = self._ctx.socket(zmq.PAIR)
        self._outbox.setsockopt(zmq.SNDHWM, _HANDOFF_QUEUE)
        self._outbox.connect(inbox)
        self._stop_in = self._ctx.socket(zmq.PAIR)
        self._stop_in.bind(inbox + "-stop")
        self._stop_out = self._ctx.socket(zmq.PAIR)
        self._stop_out.connect(inbox + "-stop")
        self._closed = False
        self._thread = threading.Thread(target=self._serve, args=(sock, monitor), name="publisher", daemon=True)
        self._thread.start()
        if config.curve is not None:
            who = f"clients in {config.curve.allow_dir}" if config.curve.allow_dir else "any client with the server key"
            log.info("CurveZMQ encryption on (server key %s); allowed: %s",
                     fingerprint(config.curve.public_key), who)
        elif not is_loopback_endpoint(config.bind):
            log.warning("publishing on %s: reachable from the network and UNENCRYPTED "
                        "(see `serstream keys` and --curve-secret)", config.bind)

    def _abandon(self, sock: zmq.Socket) -> None:
        """Undo a half-made publisher (binding failed)."""
        sock.close(0)
        if self._auth is not None:
            self._auth.stop()
        if self._own_context:
            self._ctx.term()

    # ------------------------------------------------------------------ pipeline side
    @property
    def subscriptions(self) -> int:
        return self.guard.subscriptions

    def send(self, message: Message) -> bool:
        """Hand a stamped message to the publisher thread without blocking; False (and
        counted in ``unsent``) when it could not take it."""
        try:
            self._outbox.send_multipart([message.topic.encode(), message.data], flags=zmq.NOBLOCK)
        except zmq.Again:
            self.unsent += 1
            return False
        return True

    def wait_for_subscriber(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Block until someone subscribes (for batch replays that must not lose a message).
        A subscription is applied before it is counted, so what is sent after this
        returns True reaches that subscriber."""
        deadline = time.monotonic() + timeout
        while self.guard.subscriptions == 0:
            if (stop is not None and stop.is_set()) or time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        """Send what is still queued (waiting at most ``linger_ms`` for slow subscribers)
        and release everything."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():  # a dead thread reads nothing: a blocking send would wait for ever
            with contextlib.suppress(zmq.Again):
                self._stop_out.send(b"", flags=zmq.NOBLOCK)
        self._thread.join(timeout=self.config.linger_ms / 1000 + 5)
        for s in (self._outbox, self._stop_out):
            s.close(0)
        if self.unsent:
            log.warning("%d messages were not published: the publisher thread could not keep up", self.unsent)
        if self._auth is not None:
            self._auth.stop()
        if self._own_context:
            self._ctx.term()  # returns once the queued messages are out, or linger_ms passed

    # ------------------------------------------------------------------ publisher thread
    def _serve(self, sock: zmq.Socket, monitor: zmq.Socket) -> None:
        poller = zmq.Poller()
        for s in (self._inbox, sock, monitor, self._stop_in, self._upstream):
            if s is not None:
                poller.register(s, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if monitor in ready:
                    self._watch(monitor)
                if sock in ready:
                    self._subscriptions(sock)
                if self._inbox in ready:
                    self._forward(sock, _BATCH)
                if self._upstream is not None and self._upstream in ready:
                    self._relay(sock, self._upstream)
                if self._stop_in in ready:
                    self._forward(sock, None)  # everything the pipeline sent before closing
                    break
        except Exception as exc:  # said once, in one line; what is sent from now on counts as unsent
            log.error("publishing stopped: %s: %s", type(exc).__name__, exc)
        finally:
            sock.disable_monitor()
            for s in (monitor, self._inbox, self._stop_in):
                s.close(0)
            sock.close(self.config.linger_ms)

    def _forward(self, sock: zmq.Socket, limit: int | None) -> None:
        n = 0
        while limit is None or n < limit:
            try:
                parts = self._inbox.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            sock.send_multipart(parts, flags=zmq.NOBLOCK)  # XPUB drops per subscriber, never blocks
            n += 1

    def _relay(self, sock: zmq.Socket, upstream: zmq.Socket) -> None:
        for _ in range(_BATCH):
            try:
                parts = upstream.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.forwarded += 1

    def _ask_upstream(self, topic: bytes, wanted: bool) -> None:
        """The guard's word: someone here holds ``topic`` now (or no one does any more)."""
        assert self._upstream is not None
        self._upstream.send((b"\x01" if wanted else b"\x00") + topic)

    def _subscriptions(self, sock: zmq.Socket) -> None:
        for _ in range(_BATCH):
            try:
                frame = sock.recv(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.guard.on_message(sock, frame)

    def _watch(self, monitor: zmq.Socket) -> None:
        for _ in range(_BATCH):
            try:
                event = recv_monitor_message(monitor, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            self.guard.on_event(event["event"], event["value"])


def default_bind() -> str:
    return os.environ.get("SERSTREAM_BIND", PublishConfig.bind)

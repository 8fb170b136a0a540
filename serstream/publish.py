"""ZeroMQ publisher: ``[topic, json]`` multipart messages on an XPUB socket.

XPUB rather than PUB only so the daemon can see subscriptions arrive (for
``--wait-subscriber`` and the subscriber count in stats); sending behaves as PUB: each
subscriber has its own queue of ``hwm`` messages and a slow or stuck one loses its own
messages, never stalls the daemon and never costs the others anything. Loss is
visible to each subscriber as a gap in the per-topic sequence number; messages the
daemon itself could not hand to ZeroMQ are counted in ``dropped``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass

import zmq

from serstream.errors import UserError
from serstream.events import Message
from serstream.security import CurveServer, fingerprint

__all__ = ["PublishConfig", "Publisher", "is_loopback_endpoint"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PublishConfig:
    """Where and how the daemon publishes.

    ``bind`` defaults to loopback: publishing to the network is an explicit choice.
    ``hwm`` is how many messages ZeroMQ queues for each subscriber before that
    subscriber (and only it) starts losing them. ``linger_ms`` bounds how long closing
    waits for queued messages, so shutdown never hangs on a stuck subscriber.
    """

    bind: str = "tcp://127.0.0.1:5556"
    hwm: int = 1000
    linger_ms: int = 500
    curve: CurveServer | None = None


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on 127.0.0.0/8, ::1 or localhost."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', interface names, host names: reachable from outside


class Publisher:
    """Owns the socket; used from one thread only (the pipeline's)."""

    def __init__(self, config: PublishConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self._ctx = context or zmq.Context.instance()
        self.sent = 0
        self.dropped = 0
        self.subscriptions = 0
        sock = self._ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, config.hwm)
        sock.setsockopt(zmq.LINGER, config.linger_ms)
        sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # see every (un)subscription, for the count
        self._auth = None
        public_key = b""
        if config.curve is not None:
            try:
                public_key, self._auth = config.curve.apply(sock, self._ctx)
            except BaseException:
                sock.close(0)
                raise
        try:
            sock.bind(config.bind)
        except zmq.ZMQError as exc:
            sock.close(0)
            if self._auth is not None:
                self._auth.stop()
            if exc.errno == zmq.EADDRINUSE:
                raise UserError(f"cannot bind {config.bind}: address already in use "
                                "(is another serstream running? choose --bind)") from None
            raise UserError(f"cannot bind {config.bind}: {exc.strerror}") from None
        self._sock = sock
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if config.curve is not None:
            who = f"clients in {config.curve.allow_dir}" if config.curve.allow_dir else "any client with the server key"
            log.info("CurveZMQ encryption on (server key %s); allowed: %s",
                     fingerprint(public_key), who)
        elif not is_loopback_endpoint(config.bind):
            log.warning("publishing on %s: reachable from the network and UNENCRYPTED "
                        "(see `serstream keys` and --curve-secret)", config.bind)

    @property
    def socket(self) -> zmq.Socket:
        """The bound XPUB socket, for ``serstream proxy`` to forward into."""
        return self._sock

    def send(self, message: Message) -> bool:
        """Hand a stamped message to ZeroMQ without blocking; False (and counted in
        ``dropped``) when it could not take it."""
        self.poll_subscriptions()
        try:
            self._sock.send_multipart([message.topic.encode(), message.data], flags=zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def poll_subscriptions(self) -> None:
        """Drain (un)subscription notices so they never pile up."""
        while True:
            try:
                msg = self._sock.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg and msg[0] == 1:
                self.subscriptions += 1
            elif msg and msg[0] == 0:
                self.subscriptions = max(0, self.subscriptions - 1)

    def wait_for_subscriber(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Block until someone subscribes (for batch replays that must not lose a message)."""
        deadline = time.monotonic() + timeout
        while self.subscriptions == 0:
            if stop is not None and stop.is_set():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._sock.poll(int(min(left, 0.1) * 1000), zmq.POLLIN):
                self.poll_subscriptions()
        # a subscription reached us; give its pipe a moment to be attached on our side
        time.sleep(0.05)
        return True

    def close(self) -> None:
        self._sock.close(self.config.linger_ms)
        if self._auth is not None:
            self._auth.stop()


def default_bind() -> str:
    return os.environ.get("SERSTREAM_BIND", PublishConfig.bind)

"""``serstream proxy``: many daemons' streams as one endpoint.

An XSUB socket connects to every daemon (or to other proxies), and the proxy publishes
what it receives exactly as a daemon publishes (:class:`~serstream.publish.Publisher`,
whose thread does the forwarding): messages down, and up the subscriptions to each topic
someone holds here, so each daemon still filters by topic at its end. Subscribers meet
the same guard as at a daemon (:mod:`serstream.peers`): only published topics, floods
cut, refused handshakes counted. Messages pass
through as they are, bytes untouched: every event keeps its daemon's ``source`` and
``session``, and a subscriber's gap counting stays per daemon session. ZeroMQ
reconnects on its own, so a daemon that starts later or restarts is picked up; its
new ``session`` starts its ``seq`` at 0 again. Connections and losses are logged as
they happen (a socket monitor), one line each.

Curve on both sides: towards the daemons the proxy is a client (their public keys,
one for all or one per ``--connect``, and this proxy's key pair); towards subscribers
it is a server exactly as ``run`` is (``--curve-secret``, ``--allow-clients``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import zmq
from zmq.utils.monitor import recv_monitor_message

from serstream.handshake import FAILED, failure_reason
from serstream.publish import PublishConfig, Publisher
from serstream.ratelog import RateLimitedLog
from serstream.security import CurveClient

__all__ = ["ProxyConfig", "Proxy", "DEFAULT_PROXY_BIND"]

log = logging.getLogger(__name__)

DEFAULT_PROXY_BIND = "tcp://127.0.0.1:5560"  # beside a daemon's 5556 on the same host

_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | sum(FAILED)


@dataclass(frozen=True)
class ProxyConfig:
    """``connect``: the daemons. ``publish``: where subscribers connect (as a daemon's).
    ``upstream``: Curve keys towards the daemons, one for all or one per endpoint.
    ``hwm``: messages queued from each daemon while the subscribers' side is busy."""

    connect: tuple[str, ...]
    publish: PublishConfig = field(default_factory=lambda: PublishConfig(bind=DEFAULT_PROXY_BIND))
    upstream: tuple[CurveClient, ...] = ()
    hwm: int = 10000
    reconnect_ivl_ms: int = 100
    reconnect_ivl_max_ms: int = 2000

    def __post_init__(self) -> None:
        if not self.connect:
            raise ValueError("a proxy needs at least one daemon to connect to")
        if len(self.upstream) not in (0, 1, len(self.connect)):
            raise ValueError(f"{len(self.upstream)} daemon keys for {len(self.connect)} daemons: "
                             "give one for all, or one per --connect, in the same order")


class Proxy:
    """The two sockets and the forwarding thread; :meth:`run` until ``stop`` is set."""

    def __init__(self, config: ProxyConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self._own_context = context is None  # then closing waits for what is queued, up to linger
        self._ctx = context or zmq.Context()
        xsub = self._ctx.socket(zmq.XSUB)
        xsub.setsockopt(zmq.RCVHWM, config.hwm)
        xsub.setsockopt(zmq.LINGER, 0)
        xsub.setsockopt(zmq.RECONNECT_IVL, config.reconnect_ivl_ms)
        xsub.setsockopt(zmq.RECONNECT_IVL_MAX, config.reconnect_ivl_max_ms)
        self._failing: set[str] = set()  # daemons whose last handshake failed
        self._failures = RateLimitedLog(log, logging.ERROR)
        self._monitor = xsub.get_monitor_socket(_EVENTS)
        try:
            for i, endpoint in enumerate(config.connect):
                if config.upstream:  # options are taken at connect: each daemon its own key
                    config.upstream[min(i, len(config.upstream) - 1)].apply(xsub)
                xsub.connect(endpoint)
            self.publisher = Publisher(config.publish, self._ctx, upstream=xsub)
        except BaseException:
            self._close(xsub, publisher=None)
            raise
        self.endpoint = self.publisher.endpoint
        self._xsub = xsub

    def run(self, stop: threading.Event) -> dict[str, int]:
        """Forward until ``stop``; returns how many messages came from the daemons (and
        were published here)."""
        log.info("forwarding %s -> %s; Ctrl-C to stop", ", ".join(self.config.connect), self.endpoint)
        try:
            while not stop.is_set():
                if self._monitor.poll(200, zmq.POLLIN):
                    self._log_event(recv_monitor_message(self._monitor))
        finally:
            self._close(self._xsub, self.publisher)
        return {"from_daemons": self.publisher.forwarded}

    def _log_event(self, event: dict) -> None:
        """One line per change a person can act on. A daemon that refuses the handshake is
        retried every couple of seconds for as long as the proxy runs; each retry connects,
        fails and drops. The failure is said at once and then at most once a minute with
        a count, and the connect/drop churn it causes is not said at all until the
        handshake succeeds."""
        kind = event["event"]
        endpoint = event["endpoint"].decode() if isinstance(event["endpoint"], bytes) else event["endpoint"]
        failing = endpoint in self._failing
        reason = failure_reason(kind, event["value"], encrypted=bool(self.config.upstream), side="client")
        if reason:
            self._failing.add(endpoint)
            self._failures((endpoint, reason), "%s: %s", endpoint, reason)
        elif kind == zmq.EVENT_CONNECTED:
            log.log(logging.DEBUG if failing else logging.INFO, "connected to %s", endpoint)
        elif kind == zmq.EVENT_DISCONNECTED:
            log.log(logging.DEBUG if failing else logging.WARNING, "lost %s: reconnecting", endpoint)
        elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED and failing:
            self._failing.discard(endpoint)
            log.info("%s: the handshake succeeds now; forwarding", endpoint)
        else:
            log.debug("%s: event %s", endpoint, kind)

    def _close(self, xsub: zmq.Socket, publisher: Publisher | None) -> None:
        if publisher is not None:
            publisher.close()  # its thread stops using the XSUB first
        xsub.disable_monitor()
        self._monitor.close(0)
        xsub.close(0)
        if self._own_context:
            self._ctx.term()

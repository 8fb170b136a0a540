"""Subscribe to a serstream daemon and get parsed events.

>>> from serstream.client import Subscriber
>>> with Subscriber("tcp://127.0.0.1:5556") as sub:       # doctest: +SKIP
...     for event in sub.events(timeout=10):
...         print(event["label"], event["confidence"])

Sequence numbers are per topic and per daemon session: a jump means this subscriber
lost messages (its queue was full, or it reconnected), and is counted in ``gaps``.
Malformed or oversized messages are counted in ``rejected`` and skipped, never raised.
A message of another ``schema`` version than this client's is still delivered (its keys
may differ from what this version documents) and said once per daemon session in the log.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from serstream.events import EMOTION_TOPIC, SCHEMA_VERSION
from serstream.handshake import FAILED, failure_reason
from serstream.publish import PublishConfig, needs_ipv6
from serstream.security import CurveClient

__all__ = ["Subscriber", "LinkWatch", "DEFAULT_CONNECT", "MAX_MESSAGE_BYTES"]

log = logging.getLogger(__name__)

DEFAULT_CONNECT = PublishConfig.bind  # where a daemon publishes unless told otherwise
MAX_MESSAGE_BYTES = 1 << 20
# Transport guard only: beyond this libzmq drops the connection (losing what follows),
# so the real limit is enforced in _parse where a rejection can be reported.
_TRANSPORT_LIMIT = 64 << 20


def _not_json(token: str) -> None:
    """``NaN``/``Infinity`` are not JSON (a serstream daemon sends null instead): a
    message carrying them is malformed, rejected rather than handed on."""
    raise ValueError(f"{token} is not a JSON number")


def _finite(text: str) -> float:
    """A JSON number as a float; one too large for a float (``1e999``) would be inf."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of a float's range")
    return value


class Subscriber:
    """A SUB socket connected to one or more daemons.

    Parameters
    ----------
    connect : endpoint or list of endpoints
    topics : topics to receive (``"emotion"``, ``"stats"``)
    hwm : receive high-water mark, in messages
    """

    def __init__(
        self,
        connect: str | list[str] = DEFAULT_CONNECT,
        topics: tuple[str, ...] = (EMOTION_TOPIC,),
        hwm: int = 10000,
        context: zmq.Context | None = None,
        curve: CurveClient | None = None,
    ) -> None:
        self._ctx = context or zmq.Context.instance()
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, _TRANSPORT_LIMIT)
        if curve is not None:
            try:
                curve.apply(sock)
            except BaseException:
                sock.close(0)
                raise
        for t in topics:
            sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        endpoints = [connect] if isinstance(connect, str) else list(connect)
        if any(needs_ipv6(ep) for ep in endpoints):
            sock.setsockopt(zmq.IPV6, 1)
        self.links = LinkWatch(sock, endpoints, encrypted=curve is not None)
        for ep in endpoints:
            try:
                sock.connect(ep)
            except zmq.ZMQError as exc:
                self.links.close()
                sock.close(0)
                raise ValueError(f"cannot connect to {ep}: {exc.strerror}") from None
        self._sock = sock
        self._endpoints = endpoints
        self.topics = topics
        self.received = 0
        self.gaps = 0
        self.lost = 0
        self.rejected = 0
        self.other_schema = 0  # daemon sessions seen sending another schema version
        self._schema_said: set[str] = set()
        self._last_seq: dict[tuple[str, str], int] = {}

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.links.close()
        self._sock.close(0)

    def reconnect(self, away: float = 0.0) -> None:
        """Drop the connections, stay away ``away`` seconds, connect again; the sequence
        bookkeeping is kept, so the first event after it reveals what was missed
        meanwhile (``gaps``/``lost``)."""
        for ep in self._endpoints:
            self._sock.disconnect(ep)
        if away > 0:
            time.sleep(away)
        for ep in self._endpoints:
            self._sock.connect(ep)

    def recv(self, timeout: float | None = None) -> dict[str, Any] | None:
        """Next valid event, or None when ``timeout`` seconds pass without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.links.update()
            wait = -1 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._sock.poll(wait, zmq.POLLIN):
                self.links.update()
                return None
            frames = self._sock.recv_multipart(flags=zmq.NOBLOCK)
            event = self._parse(frames)
            if event is not None:
                return event
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def events(self, timeout: float | None = None, count: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield events until ``count`` are seen or ``timeout`` seconds pass with none."""
        n = 0
        while count is None or n < count:
            ev = self.recv(timeout)
            if ev is None:
                return
            n += 1
            yield ev

    def _parse(self, frames: list[bytes]) -> dict[str, Any] | None:
        if len(frames) != 2:
            return self._reject(f"expected 2 frames, got {len(frames)}")
        topic_b, body = frames
        if len(body) > MAX_MESSAGE_BYTES:
            return self._reject(f"oversized message on {topic_b[:32]!r}: {len(body)} bytes")
        try:
            topic = topic_b.decode()
            event = json.loads(body, parse_constant=_not_json, parse_float=_finite)
        except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            return self._reject(f"undecodable message on {topic_b[:32]!r}: {exc}")
        if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
            return self._reject(f"message on {topic!r} is not a serstream event")
        event["topic"] = topic
        self._check_schema(event)
        key = (str(event.get("session")), topic)
        last = self._last_seq.get(key)
        if last is not None and event["seq"] != last + 1:
            self.gaps += 1
            self.lost += max(0, event["seq"] - last - 1)
        self._last_seq[key] = event["seq"]
        self.received += 1
        return event

    def _check_schema(self, event: dict[str, Any]) -> None:
        """A daemon of another version is not an error (most keys still mean the same), but
        a consumer reading a key that moved would silently get nothing: say it, once."""
        version, session = event.get("schema"), str(event.get("session"))
        if version != SCHEMA_VERSION and session not in self._schema_said:
            self._schema_said.add(session)
            self.other_schema += 1
            log.warning("daemon session %s sends schema %r, this client knows schema %d: keys may differ "
                        "(serstream/schema/event.schema.json)", session, version, SCHEMA_VERSION)

    def _reject(self, why: str) -> None:
        self.rejected += 1
        log.warning("skipped a message: %s", why)
        return None


class LinkWatch:
    """What became of each connection a SUB socket tries to make (its socket monitor).

    A SUB socket retries in silence: a daemon that is not running, or one that refuses
    the handshake (the wrong ``--curve-server-key``, a client key it does not allow, a
    client with encryption against a daemon without, or the reverse) all look the same
    from recv(): nothing. This tells them apart, per endpoint, for a line a person can
    act on (see ``serstream listen``).
    """

    _EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | sum(FAILED)

    def __init__(self, sock: zmq.Socket, endpoints: list[str], encrypted: bool) -> None:
        self._sock = sock
        self._monitor: zmq.Socket | None = sock.get_monitor_socket(self._EVENTS)
        self.encrypted = encrypted
        self._state = {ep: "never connected" for ep in endpoints}  # or "connected", "ok", "failed: why"
        self.since = {ep: time.monotonic() for ep in endpoints}  # when the state last changed

    def update(self) -> None:
        """Take in what the monitor has reported since the last call."""
        if self._monitor is None:
            return
        while self._monitor.poll(0):
            ev = recv_monitor_message(self._monitor)
            ep = ev["endpoint"].decode(errors="replace")
            if ep not in self._state:
                continue
            kind = ev["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._set(ep, "ok")
            elif kind == zmq.EVENT_CONNECTED and not self._state[ep].startswith("failed"):
                self._set(ep, "connected")  # (after a failure, a retry is not news until it succeeds)
            elif kind in FAILED:
                self._set(ep, "failed: " + str(failure_reason(kind, ev["value"], encrypted=self.encrypted,
                                                              side="client")))
            elif kind == zmq.EVENT_DISCONNECTED and self._state[ep] == "ok":
                self._set(ep, "disconnected")

    def _set(self, ep: str, state: str) -> None:
        if self._state[ep] != state:
            self._state[ep] = state
            self.since[ep] = time.monotonic()

    def problems(self, after: float) -> dict[str, str]:
        """``endpoint -> what is wrong`` for each endpoint that has been without a
        working link for ``after`` seconds or more."""
        now = time.monotonic()
        out = {}
        for ep, state in self._state.items():
            if state == "ok" or now - self.since[ep] < after:
                continue
            if state == "never connected":
                out[ep] = "nothing accepts connections there (is the daemon running, on this endpoint?)"
            elif state == "connected":
                out[ep] = "connected, but no handshake has completed"
            elif state == "disconnected":
                out[ep] = "the daemon went away; retrying"
            else:
                out[ep] = state.split(": ", 1)[1]
        return out

    def close(self) -> None:
        if self._monitor is not None:
            self._sock.disable_monitor()
            self._monitor.close(0)
            self._monitor = None

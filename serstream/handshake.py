"""Why a ZeroMQ handshake failed, in words a person can act on, from either end.

libzmq reports a refused connection only to a socket monitor, as an event and a code.
The daemon (:mod:`serstream.peers`) explains it about the client; ``listen`` and the
client library (:class:`serstream.client.LinkWatch`) and the proxy explain it about the
daemon. One reading of the events serves all three, so that the same failure is never
told two ways.
"""

from __future__ import annotations

import errno
from typing import Literal

import zmq

__all__ = ["FAILED", "failure_reason", "hung_up"]

FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
          zmq.EVENT_HANDSHAKE_FAILED_AUTH)

# libzmq's protocol error codes for the handshake failures worth explaining
_CRYPTOGRAPHIC = 0x11000001  # ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: Curve boxes that do not open
_MECHANISM_MISMATCH = 0x11000002  # ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: CURVE against NULL
# what a write or read during the handshake gets once the peer has closed its end
_HUNG_UP = (errno.EPIPE, errno.ECONNRESET)


def hung_up(event: int, value: int) -> bool:
    """Whether the peer closed the connection before the handshake was done.

    Both ends compare the two mechanisms when their greetings cross, so when a client
    without CurveZMQ meets a daemon with it, either end may see the mismatch first. When
    the client does, it closes at once, and the daemon only sees its writes fail. A
    TCP port check (connect, then close) looks the same from here.
    """
    return event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and value in _HUNG_UP


def failure_reason(event: int, value: int, *, encrypted: bool, side: Literal["daemon", "client"]) -> str | None:
    """The reason for a handshake failure ``event`` with code ``value``, said by ``side``
    (whose socket saw it; ``encrypted``: whether that side uses CurveZMQ); None for an
    event that is not a handshake failure.

    The daemon's own refusal of a key (``EVENT_HANDSHAKE_FAILED_AUTH``) is explained by its
    ZAP handler, which knows the key; the daemon gets a generic line here.
    """
    if event not in FAILED:
        return None
    if side == "client":
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return "the daemon does not allow this client's key (its --allow-clients)"
        if encrypted:
            return ("the CurveZMQ handshake failed (is --curve-server-key this daemon's public key? "
                    "does the daemon encrypt?)")
        return "the handshake failed (does the daemon expect CurveZMQ keys? see --curve-server-key)"
    if hung_up(event, value):
        return ("it hung up during the handshake (a client that does not use CurveZMQ encryption, "
                "or a bare port check)" if encrypted else
                "it hung up during the handshake (a client that asks for CurveZMQ encryption, which this "
                "daemon is not using, or a bare port check)")
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == _CRYPTOGRAPHIC:
        return "its CurveZMQ handshake did not decrypt (the client has a wrong --curve-server-key)"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and value == _MECHANISM_MISMATCH:
        return ("the client does not use CurveZMQ encryption" if encrypted
                else "the client asks for CurveZMQ encryption, which this daemon is not using")
    return f"handshake failed ({zmq.Event(event).name.lower()}, code {value:#x})"

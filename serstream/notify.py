"""Readiness and shutdown for service managers: systemd's ``sd_notify`` datagram protocol.

A ``Type=notify`` service is told, in ``$NOTIFY_SOCKET``, the path of a Unix datagram
socket (or an abstract one, ``@name``); each state is one datagram of ``KEY=VALUE``
lines. ``READY=1`` means start-up is over (the model loaded, the socket bound), so units
ordered after serstream start only then; ``STOPPING=1`` that a stop was asked for and
the last segment is being flushed. Without ``$NOTIFY_SOCKET`` (not under systemd) this
does nothing: no dependency on libsystemd, and nothing to configure.
"""

from __future__ import annotations

import logging
import os
import socket

__all__ = ["notify"]

log = logging.getLogger(__name__)


def notify(*states: str) -> bool:
    """Send ``states`` (``"READY=1"``, ``"STATUS=..."``) as one datagram to
    ``$NOTIFY_SOCKET``. True when sent; False when not under a service manager or
    when the socket cannot be reached (logged once, never raised: the daemon works
    the same without its manager hearing about it)."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET=%s: only Unix socket paths are supported; not notifying", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", os.environ["NOTIFY_SOCKET"], exc.strerror or exc)
        return False
    return True

"""The view's server side: a hub between one ZeroMQ subscriber and many pages.

Each page gets ``text/event-stream`` on ``/events``: ``reset`` (forget what you drew),
the backlog, then every message as it arrives (``emotion``, ``stats``) and a ``status``
about the subscription (messages received, seq gaps and messages lost, per daemon
session) every second. A page that cannot keep up is disconnected rather than queued
without bound; its browser reconnects and starts again from the backlog.
"""

from __future__ import annotations

import collections
import http.server
import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from serstream.errors import UserError
from serstream.events import EMOTION_TOPIC, STATS_TOPIC
from serstream.publish import is_loopback_endpoint
from serstream.view import ViewConfig

__all__ = ["Hub", "ViewServer", "parse_http"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".png": "image/png", ".md": "text/plain; charset=utf-8",
          "": "text/plain; charset=utf-8"}


def parse_http(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair, or a one-line error."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"--http {text}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    return host, int(port)


class _Page:
    """One open page's queue; ``dropped`` once it fell too far behind."""

    def __init__(self, size: int) -> None:
        self.queue: queue.Queue[bytes] = queue.Queue(size)
        self.dropped = False


class Hub:
    """The backlog and one bounded queue per open page; fed by the subscriber thread."""

    def __init__(self, config: ViewConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._backlog: collections.deque[tuple[float, bytes]] = collections.deque(maxlen=config.max_backlog)
        self._pages: set[_Page] = set()
        self._status: bytes | None = None  # the latest status, for pages that open
        self.closed = threading.Event()

    def publish(self, kind: str, data: Any) -> None:
        """An event for every page; ``status`` replaces the last one instead of joining
        the backlog. Both are taken on the subscriber's thread, after the events they
        count, so no page sees a count ahead of its stream."""
        chunk = f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        now = time.monotonic()
        with self._lock:
            if kind == "status":
                self._status = chunk
            else:
                self._backlog.append((now, chunk))
                while self._backlog and self._backlog[0][0] < now - self.config.history_s:
                    self._backlog.popleft()
            for page in list(self._pages):
                try:
                    page.queue.put_nowait(chunk)
                except queue.Full:  # too slow: let it go, its browser reconnects
                    page.dropped = True
                    self._pages.discard(page)

    def open_page(self) -> tuple[_Page, list[bytes]]:
        page = _Page(self.config.page_queue)
        with self._lock:
            self._pages.add(page)
            return page, [chunk for _, chunk in self._backlog] + ([self._status] if self._status else [])

    def close_page(self, page: _Page) -> None:
        with self._lock:
            self._pages.discard(page)

    @property
    def pages(self) -> int:
        with self._lock:
            return len(self._pages)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"  # the event stream ends when the connection does

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        path = self.path.split("?", 1)[0]
        if path == "/events":
            self._events()
        elif path == "/":
            self._file(STATIC / "index.html")
        elif path.startswith("/static/"):
            target = (STATIC / path[len("/static/"):]).resolve()
            if target.is_relative_to(STATIC) and target.is_file():
                self._file(target)
            else:
                self.send_error(404)
        else:
            self.send_error(404)

    def _file(self, path: Path) -> None:
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", _TYPES.get(path.suffix, "application/octet-stream"))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def _events(self) -> None:
        hub = self.server.hub
        page, backlog = hub.open_page()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(b"retry: 1000\n\nevent: reset\ndata: {}\n\n" + b"".join(backlog))
            self.wfile.flush()
            while not hub.closed.is_set() and not page.dropped:
                try:
                    chunk = page.queue.get(timeout=self.server.config.keepalive_s)
                except queue.Empty:
                    chunk = b": keep-alive\n\n"
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page was closed
        finally:
            hub.close_page(page)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("http: " + format, *args)


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    hub: Hub
    config: ViewConfig


class ViewServer:
    """Subscribe with ``subscriber`` (a :class:`~serstream.client.Subscriber`) and serve
    the page until ``stop`` is set."""

    def __init__(self, subscriber, config: ViewConfig | None = None) -> None:
        self.config = config or ViewConfig()
        self.subscriber = subscriber
        self.hub = Hub(self.config)
        self.lost_by_session: dict[str, int] = {}
        self.started = time.time()
        host, port = parse_http(self.config.http)
        try:
            self.httpd = _HTTPServer((host, port), _Handler)
        except OSError as exc:
            raise UserError(f"cannot serve the view on {self.config.http}: {exc.strerror}") from None
        self.httpd.hub, self.httpd.config = self.hub, self.config
        self.host, self.port = self.httpd.server_address[:2]
        if not is_loopback_endpoint(f"tcp://{host}:{port}"):
            log.warning("serving the view on %s: reachable from the network, with no password", self.config.http)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def status(self) -> dict[str, Any]:
        """The subscription's counters; read on the subscriber's thread only, which
        changes them (a page's thread once iterated ``lost_by_session`` as it grew)."""
        sub = self.subscriber
        return {"received": sub.received, "gaps": sub.gaps, "lost": sub.lost, "rejected": sub.rejected,
                "lost_by_session": dict(self.lost_by_session), "pages": self.hub.pages,
                "since": round(self.started, 3)}

    def serve(self, stop: threading.Event) -> None:
        web = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                               name="view-http", daemon=True)
        web.start()
        next_status = 0.0
        try:
            while not stop.is_set():
                lost = self.subscriber.lost
                ev = self.subscriber.recv(timeout=0.2)
                if ev is not None:
                    # a gap is counted while the message after it is parsed: it is that session's
                    self._take(ev, self.subscriber.lost - lost)
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + self.config.status_interval
                    self.hub.publish("status", self.status())
        finally:
            self.hub.closed.set()
            self.httpd.shutdown()
            self.httpd.server_close()

    def _take(self, ev: dict[str, Any], lost: int) -> None:
        topic = ev.pop("topic")
        if topic not in (EMOTION_TOPIC, STATS_TOPIC):
            return
        session = str(ev.get("session"))
        self.lost_by_session[session] = self.lost_by_session.get(session, 0) + lost
        self.hub.publish(topic, ev)

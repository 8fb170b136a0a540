"""``serstream view``: a daemon's stream, live, in a browser.

A subscriber thread receives the daemon's messages and a small standard-library HTTP
server (:mod:`serstream.view.server`) hands them to each open page as Server-Sent
Events, after a backlog of the last minutes (so a page opened late, or reloaded, shows
the recent past at once). The page (``static/``) draws them with uPlot, vendored in
``static/vendor/uplot`` (no CDN: it works offline). Only ``serstream view`` imports the
server; this module holds its settings, for the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ViewConfig"]


@dataclass(frozen=True)
class ViewConfig:
    """``http``: where the page is served (loopback unless chosen otherwise).
    ``history_s``: how far back a page that opens sees. ``page_queue``: messages
    waiting for one page before it is dropped (its browser reconnects by itself)."""

    http: str = "127.0.0.1:8765"
    history_s: float = 600.0
    max_backlog: int = 20000
    page_queue: int = 5000
    status_interval: float = 1.0
    keepalive_s: float = 15.0

    def __post_init__(self) -> None:
        if not self.history_s > 0:
            raise ValueError(f"history must be positive, got {self.history_s}")

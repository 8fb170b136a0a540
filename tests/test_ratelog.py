"""The rate-limited log: peers an outsider can invent at will must not grow its memory."""

from __future__ import annotations

import logging

from serstream.ratelog import RateLimitedLog


def test_new_keys_past_the_burst_are_counted_not_kept(caplog):
    log = RateLimitedLog(logging.getLogger("ratelog-test"), burst=5, max_keys=50)
    with caplog.at_level(logging.WARNING, logger="ratelog-test"):
        written = sum(log(("peer", i), "refused %d", i) for i in range(10_000))
    assert written == 5
    assert len(log._last) <= 50 and len(log._held) <= 50
    # a key already seen still hears how often it went on; the rest are said as one count
    assert [r.getMessage() for r in caplog.records] == [f"refused {i}" for i in range(5)]
    log._window_start = -float("inf")  # the next minute
    log._last.clear()
    with caplog.at_level(logging.WARNING, logger="ratelog-test"):
        log("another", "again")
    assert caplog.records[-1].getMessage() == "again (9995 lines about others were left out)"

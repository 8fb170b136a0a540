"""``serstream view``: the page in a real headless Chromium (loads, connects, shows the
final label of a clip replayed into the daemon it watches), the event stream it is fed
(backlog for a late page, lost messages per daemon session), the vendored chart library,
and one-line errors. The browser test leaves a screenshot in build/artefacts/view.png."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import signal

import pytest
from browser import Chromium

from messages import event
from procs import EXAMPLES, ROOT, Lines, assert_one_line_error, free_endpoint, serstream, spawn
from serstream.events import Stamper
from serstream.publish import PublishConfig, Publisher

STATIC = ROOT / "serstream" / "view" / "static"
ARTEFACT = ROOT / "build" / "artefacts" / "view.png"
CLIPS = [(EXAMPLES / n).relative_to(ROOT) for n in ("angry_cremad_1001_DFA_ANG_XX.wav", "happy_ravdess_03-01-03-02-02-01-03.wav",
                                "neutral_ravdess_03-01-01-01-01-01-01.wav", "sad_savee_DC_sa01.wav")]


def _view(*args):
    proc = spawn("view", *args)
    err = Lines(proc.stderr)
    assert err.wait_for(" on http://", 60), err.text()
    url = re.search(r" on (http://\S+)", err.text_so_far()).group(1)
    return proc, err, url


def _stop(proc, err) -> str:
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    text = err.text()
    assert proc.returncode == 0, text
    return text


def _json_lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines()]


def test_the_page_shows_the_final_label_of_a_replayed_clip(tmp_path):
    ep = free_endpoint()
    voice = tmp_path / "reader.json"  # judged against an enrolled voice, which the page names
    assert serstream("enrol", "--out", voice, CLIPS[0]).returncode == 0
    view, err, url = _view("--connect", ep, "--http", "127.0.0.1:0")
    browser = Chromium(tmp_path / "profile", height=1120)
    try:
        browser.navigate(url)
        browser.wait_for("document.getElementById('conn').textContent === 'connected'", 60)
        assert browser.evaluate("typeof uPlot") == "function"  # the vendored chart library, served locally
        r = serstream("replay", "--bind", ep, "--speed", "1", "--json", "--stats", "--stats-interval", "0.5",
                      "--wait-subscriber", "60", "--voice", voice, *CLIPS, timeout=300)
        assert r.returncode == 0, r.stderr
        printed = _json_lines(r.stdout)
        finals = [m for m in printed if m["type"] == "emotion" and m["final"]]
        expected = finals[-1]["label"]
        browser.wait_for(f"(() => {{ const e = document.getElementById('current-label');"
                         f" return e.textContent === {json.dumps(expected)} && e.dataset.final === 'true'; }})()", 60)
        assert browser.evaluate("document.getElementById('current-detail').textContent").endswith(" · voice reader")
        # every message arrived (none lost), every segment is on the timeline and in the table
        browser.wait_for(f"serstreamView.status && serstreamView.status.received === {len(printed)}", 30)
        assert browser.evaluate("serstreamView.status.lost") == 0
        assert "no messages lost" in browser.evaluate("document.getElementById('lost').textContent")
        segments = {(m["source"], m["segment"]) for m in printed if m["type"] == "emotion"}
        assert browser.evaluate("serstreamView.segments.size") == len(segments)
        rows = browser.evaluate("[...document.querySelectorAll('#segments tbody tr')]"
                                ".map(tr => [tr.cells[1].textContent, tr.cells[3].textContent, tr.cells[4].textContent])")
        assert rows[0] == [str(CLIPS[-1]), "final", expected]
        assert {tuple(r) for r in rows} >= {(m["source"], "final", m["label"]) for m in finals}
        sources = browser.evaluate("[...document.querySelectorAll('#sources tbody tr')].map(tr => tr.cells[1].textContent)")
        assert sources and set(sources) == {"file"}  # device state from stats
        assert browser.evaluate("document.querySelectorAll('#timeline canvas, #levels canvas').length") == 2
        browser.screenshot(ARTEFACT)
        assert ARTEFACT.stat().st_size > 10_000
        assert browser.exceptions == [], browser.exceptions
    finally:
        browser.close()
    _stop(view, err)


def _events(url: str, until, timeout: float = 60) -> list[tuple[str, dict]]:
    """The page's event stream, read as a browser would, until ``until(events)``."""
    host, port = url.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    conn.request("GET", "/events")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    got: list[tuple[str, dict]] = []
    kind = None
    try:
        while not until(got):
            line = resp.fp.readline().decode()
            assert line, "the stream ended"
            if line.startswith("event: "):
                kind = line[7:].strip()
            elif line.startswith("data: "):
                got.append((kind, json.loads(line[6:])))
    finally:
        conn.close()
    return got


def test_a_late_page_gets_the_backlog_and_sees_lost_messages_per_session():
    ep = free_endpoint()
    view, err, url = _view("--connect", ep, "--http", "127.0.0.1:0")
    pub = Publisher(PublishConfig(bind=ep))
    a, b = Stamper(), Stamper()
    try:
        assert pub.wait_for_subscriber(60)
        sent = []
        for i in range(6):
            for stamper in (a, b):
                message = stamper.stamp(event(i))
                if not (stamper is b and i == 3):  # one message of session b never arrives
                    pub.send(message)
                    sent.append(dict(message.payload))
        # opened after everything was sent: backlog and stream have it all, in order ("sent" is
        # handed to the publisher: under load the view may still be receiving when the page opens)
        got = _events(url, lambda evs: any(k == "status" and d["received"] == len(sent) for k, d in evs))
    finally:
        pub.close()
    assert got[0] == ("reset", {})
    assert [d for k, d in got if k == "emotion"] == sent
    for i, (kind, data) in enumerate(got):  # a status never counts an event the page has not had
        if kind == "status":
            assert data["received"] <= sum(k == "emotion" for k, _ in got[:i]), got
    status = [d for k, d in got if k == "status"][-1]
    assert status["lost"] == 1 and status["gaps"] == 1
    assert status["lost_by_session"] == {a.session: 0, b.session: 1}
    _stop(view, err)


def test_vendored_chart_library_is_the_published_one():
    vendor = STATIC / "vendor" / "uplot"
    source = (vendor / "SOURCE.md").read_text()
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        digest = hashlib.sha256((vendor / name).read_bytes()).hexdigest()
        assert f"`{name}` | `dist/{name}` | `{digest}`" in source, name
    assert "MIT License" in (vendor / "LICENSE").read_text()
    page = (STATIC / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from the network


def test_network_view_warns_and_bad_addresses_are_one_line():
    view, err, _ = _view("--connect", free_endpoint(), "--http", "0.0.0.0:0")
    text = _stop(view, err)
    assert "reachable from the network" in text
    r = serstream("view", "--http", "localhost")
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "expected HOST:PORT")
    busy, busy_err, url = _view("--connect", free_endpoint(), "--http", "127.0.0.1:0")
    port = url.rstrip("/").rsplit(":", 1)[1]
    r = serstream("view", "--http", f"127.0.0.1:{port}")
    assert r.returncode == 2
    assert_one_line_error(r.stderr, f"cannot serve the view on 127.0.0.1:{port}")
    _stop(busy, busy_err)


@pytest.mark.parametrize("args, needle", [(["--history", "0"], "history must be positive"),
                                          (["--curve-secret", "x"], "needs both --curve-server-key")])
def test_bad_view_options(args, needle):
    r = serstream("view", "--http", "127.0.0.1:0", *args)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, needle)

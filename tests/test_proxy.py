"""``serstream proxy``: three daemons and one subscriber through it. Daemons that start
after the proxy, or restart, are picked up; every message arrives as its daemon
published it (its own ``source``, ``session`` and unbroken ``seq``); Curve on both
sides, with a different key for each daemon."""

from __future__ import annotations

import shutil
import signal
import time

import pytest

from procs import EXAMPLES, Lines, assert_one_line_error, collect, free_endpoint, serstream, spawn
from serstream.client import Subscriber
from serstream.security import CurveClient

CLIPS = sorted(EXAMPLES.glob("*.wav"))


def _proxy(*args):
    proc = spawn("proxy", *args)
    err = Lines(proc.stderr)
    assert err.wait_for("forwarding", 60), err.text()
    return proc, err


def _daemon(tiny, ep, clip, *extra):
    return spawn("replay", "--model", tiny, "--bind", ep, "--speed", "0", "--json", "--stats",
                 "--stats-interval", "0.2", "--wait-subscriber", "60", *extra, clip)


def _until_all_exit(sub, daemons) -> list[dict]:
    got: list[dict] = []
    for d in daemons:
        got += collect(sub, d)
    return got


def _printed(proc) -> list[dict]:
    import json

    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return [json.loads(x) for x in out.splitlines()]


def test_three_daemons_through_one_proxy(tiny):
    daemons_ep = [free_endpoint() for _ in range(3)]
    ep = free_endpoint()
    args = [a for d in daemons_ep for a in ("--connect", d)]
    proxy, err = _proxy(*args, "--bind", ep)  # before any daemon exists
    with Subscriber(ep, topics=("emotion", "stats")) as sub:
        daemons = [_daemon(tiny, d, clip) for d, clip in zip(daemons_ep, CLIPS, strict=False)]
        received = _until_all_exit(sub, daemons)
        printed = [_printed(d) for d in daemons]
        # daemon 0 restarts: a new session, picked up by the same proxy and subscriber
        again = _daemon(tiny, daemons_ep[0], CLIPS[3])
        received += collect(sub, again)
        printed.append(_printed(again))
        assert sub.gaps == 0 and sub.lost == 0
    for m in received:
        m.pop("topic")
    sessions = [p[0]["session"] for p in printed]
    assert len(set(sessions)) == 4
    for session, own in zip(sessions, printed, strict=True):
        # everything each daemon published, as it published it, in its order
        assert [m for m in received if m["session"] == session] == own
        assert {m["source"] for m in own} == {own[0]["source"]}
    assert {p[0]["source"] for p in printed} == {str(c) for c in CLIPS[:4]}
    proxy.send_signal(signal.SIGINT)
    proxy.wait(timeout=30)
    text = err.text()
    assert proxy.returncode == 0, text
    assert text.count(f"connected to {daemons_ep[0]}") >= 2, text  # and again after the restart
    assert f"lost {daemons_ep[0]}: reconnecting" in text
    assert f"forwarded {len(received)} messages from 3 daemons" in text


def test_curve_on_both_sides_with_a_key_per_daemon(tiny, tmp_path):
    keys = tmp_path / "keys"
    r = serstream("keys", keys, "--name", "d1", "--name", "d2", "--name", "proxy", "--name", "front",
                  "--name", "alice")
    assert r.returncode == 0, r.stderr
    proxies, users = tmp_path / "proxies", tmp_path / "users"
    proxies.mkdir()
    users.mkdir()
    shutil.copy(keys / "proxy.key", proxies)
    shutil.copy(keys / "alice.key", users)
    d1, d2, ep = free_endpoint(), free_endpoint(), free_endpoint()
    proxy, err = _proxy("--connect", d1, "--connect", d2, "--bind", ep,
                        "--daemon-key", keys / "d1.key", "--daemon-key", keys / "d2.key",
                        "--daemon-secret", keys / "proxy.key_secret",
                        "--curve-secret", keys / "front.key_secret", "--allow-clients", users)
    alice = Subscriber(ep, topics=("emotion",), curve=CurveClient(keys / "front.key", keys / "alice.key_secret"))
    plain = Subscriber(ep, topics=("emotion",))
    daemons = [_daemon(tiny, d, clip, "--curve-secret", keys / f"{name}.key_secret", "--allow-clients", proxies)
               for d, clip, name in ((d1, CLIPS[0], "d1"), (d2, CLIPS[1], "d2"))]
    got = _until_all_exit(alice, daemons)
    printed = [m for d in daemons for m in _printed(d) if m["type"] == "emotion"]
    assert len(got) == len(printed) > 0 and {m["source"] for m in got} == {str(CLIPS[0]), str(CLIPS[1])}
    assert list(plain.events(timeout=1)) == []
    alice.close()
    plain.close()
    proxy.send_signal(signal.SIGINT)
    proxy.wait(timeout=30)
    assert proxy.returncode == 0, err.text()
    assert "CurveZMQ encryption on" in err.text()


def test_a_daemon_that_refuses_the_proxys_key_is_named_with_the_reason(tiny, tmp_path):
    """The proxy reads handshake failures as ``listen`` does (one reading, serstream.handshake)."""
    keys = tmp_path / "keys"
    r = serstream("keys", keys, "--name", "d1", "--name", "proxy", "--name", "other")
    assert r.returncode == 0, r.stderr
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(keys / "other.key", allowed)  # not the proxy's
    d1 = free_endpoint()
    daemon = _daemon(tiny, d1, CLIPS[0], "--curve-secret", keys / "d1.key_secret", "--allow-clients", allowed)
    proxy, err = _proxy("--connect", d1, "--bind", free_endpoint(),
                        "--daemon-key", keys / "d1.key", "--daemon-secret", keys / "proxy.key_secret")
    line = f"{d1}: the daemon does not allow this client's key"
    assert err.wait_for(line, 60), err.text()
    # it retries (100 ms, doubling to 2 s): by now several handshakes have failed, each said
    # to the proxy's monitor; the log says the failure once, not once per retry
    time.sleep(4)
    proxy.send_signal(signal.SIGINT)
    proxy.wait(timeout=30)
    daemon.kill()
    daemon.wait(timeout=30)
    assert proxy.returncode == 0, err.text()
    assert err.text().count(line) == 1, err.text()
    assert f"lost {d1}" not in err.text(), err.text()  # the retries' drops are not news either


@pytest.mark.parametrize("args, needle", [
    (["--daemon-key", "k1", "--daemon-key", "k2"], "need both --daemon-key and --daemon-secret"),
    (["--daemon-key", "k1", "--daemon-key", "k2", "--daemon-key", "k3", "--daemon-secret", "s"],
     "3 daemon keys for 2 daemons"),
    (["--allow-clients", "somewhere"], "--allow-clients needs --curve-secret"),
])
def test_bad_proxy_setups(args, needle):
    r = serstream("proxy", "--connect", free_endpoint(), "--connect", free_endpoint(), *args)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, needle)


def test_busy_port_is_one_line():
    ep = free_endpoint()
    first, _ = _proxy("--connect", free_endpoint(), "--bind", ep)
    r = serstream("proxy", "--connect", free_endpoint(), "--bind", ep)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "address already in use")
    first.send_signal(signal.SIGINT)
    first.wait(timeout=30)


def test_a_refusing_daemon_is_said_once_and_its_recovery_is_said(caplog):
    """The proxy's reading of its monitor's events, fed the sequence a refused and then
    accepted connection produces (a real proxy: its sockets are bound and closed)."""
    import logging
    import threading

    import zmq

    from serstream.proxy import Proxy, ProxyConfig
    from serstream.publish import PublishConfig

    ep = "tcp://127.0.0.1:1"
    proxy = Proxy(ProxyConfig(connect=(ep,), publish=PublishConfig(bind=free_endpoint())))
    refused = {"event": zmq.EVENT_HANDSHAKE_FAILED_AUTH, "value": 0, "endpoint": ep.encode()}
    connected = {"event": zmq.EVENT_CONNECTED, "value": 0, "endpoint": ep.encode()}
    dropped = {"event": zmq.EVENT_DISCONNECTED, "value": 0, "endpoint": ep.encode()}
    with caplog.at_level(logging.INFO, logger="serstream.proxy"):
        for _ in range(5):
            for ev in (connected, refused, dropped):
                proxy._log_event(ev)
        proxy._log_event(connected)
        proxy._log_event({"event": zmq.EVENT_HANDSHAKE_SUCCEEDED, "value": 0, "endpoint": ep.encode()})
        proxy._log_event(dropped)  # a loss after it works again is news
    stop = threading.Event()
    stop.set()
    proxy.run(stop)
    said = [r.getMessage() for r in caplog.records if ep in r.getMessage()]
    assert said == [f"connected to {ep}", f"{ep}: the daemon does not allow this client's key (its --allow-clients)",
                    f"{ep}: the handshake succeeds now; forwarding", f"lost {ep}: reconnecting"], said

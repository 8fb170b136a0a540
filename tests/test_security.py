"""Who may listen: loopback by default, a warning for unencrypted network binds,
CurveZMQ encryption with an allow-list of client keys, and secrets kept secret."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import time

import pytest

from procs import (
    EXAMPLES,
    Lines,
    assert_one_line_error,
    collect,
    free_endpoint,
    permissions_apply,
    serstream,
    spawn,
)
from serstream.client import Subscriber
from serstream.security import CurveClient


@pytest.fixture()
def keys(tmp_path):
    d = tmp_path / "keys"
    r = serstream("keys", d, "--name", "server", "--name", "alice", "--name", "mallory")
    assert r.returncode == 0, r.stderr
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(d / "alice.key", allowed / "alice.key")
    return d, allowed


def test_key_files_are_private(keys):
    d, _ = keys
    for name in ("server", "alice", "mallory"):
        mode = stat.S_IMODE((d / f"{name}.key_secret").stat().st_mode)
        assert mode == 0o600, oct(mode)
        assert b"secret-key" in (d / f"{name}.key_secret").read_bytes()
        assert b"secret-key" not in (d / f"{name}.key").read_bytes()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    r = serstream("keys", d, "--name", "server")
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "not overwriting")


@pytest.mark.parametrize("planted", ["dangling", "to_a_file"])
def test_keys_never_write_through_a_planted_link(tmp_path, planted):
    """Someone who can write the key directory plants a link where the secret will go:
    the secret must not land at (or overwrite) the link's target."""
    d = tmp_path / "keys"
    d.mkdir(mode=0o700)
    target = tmp_path / "elsewhere" / "stolen"
    target.parent.mkdir()
    if planted == "to_a_file":
        target.write_text("precious\n")
    (d / "server.key_secret").symlink_to(target)
    r = serstream("keys", d, "--name", "server")
    assert r.returncode == 2, r.stdout
    assert_one_line_error(r.stderr, "server.key_secret")
    if planted == "dangling":
        assert not target.exists(), "the secret key was written through the link"
    else:
        assert target.read_text() == "precious\n"
    assert not (d / "server.key").exists()


def test_keys_refuse_a_directory_others_can_write(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    r = serstream("keys", d)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "writable by others")
    assert list(d.iterdir()) == []


def test_only_authorised_subscriber_receives(keys, tiny):
    d, allowed = keys
    clips = sorted(EXAMPLES.glob("*.wav"))[:3]
    ep = free_endpoint()
    alice = Subscriber(ep, topics=("emotion",), curve=CurveClient(d / "server.key", d / "alice.key_secret"))
    mallory = Subscriber(ep, topics=("emotion",), curve=CurveClient(d / "server.key", d / "mallory.key_secret"))
    plain = Subscriber(ep, topics=("emotion",))
    proc = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "0", "--json",
                 "--curve-secret", d / "server.key_secret", "--allow-clients", allowed,
                 "--wait-subscriber", "20", *clips)
    got_alice = collect(alice, proc)
    out, err = proc.communicate(timeout=60)
    got_mallory = list(mallory.events(timeout=1))
    got_plain = list(plain.events(timeout=1))
    for s in (alice, mallory, plain):
        s.close()
    assert proc.returncode == 0, err
    printed = [ln for ln in out.splitlines() if ln.strip()]
    assert len(got_alice) == len(printed) > 0  # everything, in order, nothing lost
    assert [e["seq"] for e in got_alice] == list(range(len(printed)))
    assert got_mallory == [] and got_plain == []
    # no secret material in the logs
    for name in ("server", "alice", "mallory"):
        secret_line = [ln for ln in (d / f"{name}.key_secret").read_text().splitlines() if "secret-key" in ln][0]
        secret_value = secret_line.split("=", 1)[1].strip().strip('"')
        assert secret_value not in err and secret_value not in out
    assert "CurveZMQ encryption on" in err


def test_listen_with_curve_keys(keys, tiny):
    d, allowed = keys
    ep = free_endpoint()
    listener = spawn("listen", "--connect", ep, "--json", "--count", "1", "--timeout", "30",
                     "--curve-server-key", d / "server.key", "--curve-secret", d / "alice.key_secret")
    r = serstream("replay", "--model", tiny, "--bind", ep, "--speed", "0", "--quiet",
                  "--curve-secret", d / "server.key_secret", "--allow-clients", allowed,
                  "--wait-subscriber", "20", sorted(EXAMPLES.glob("*.wav"))[0])
    out, err = listener.communicate(timeout=40)
    assert r.returncode == 0, r.stderr
    assert listener.returncode == 0, err
    assert '"type":"emotion"' in out


def test_network_bind_warns_unless_encrypted(keys, tiny):
    d, allowed = keys
    port = free_endpoint().rsplit(":", 1)[1]
    clip = sorted(EXAMPLES.glob("*.wav"))[0]
    r = serstream("replay", "--model", tiny, "--bind", f"tcp://0.0.0.0:{port}", "--speed", "0", "--quiet", clip)
    assert r.returncode == 0, r.stderr
    assert "UNENCRYPTED" in r.stderr
    r = serstream("replay", "--model", tiny, "--bind", f"tcp://0.0.0.0:{port}", "--speed", "0", "--quiet",
                  "--curve-secret", d / "server.key_secret", clip)
    assert r.returncode == 0, r.stderr
    assert "UNENCRYPTED" not in r.stderr
    r = serstream("replay", "--model", tiny, "--speed", "0", "--quiet", "--bind", free_endpoint(), clip)
    assert "UNENCRYPTED" not in r.stderr  # loopback: no warning


@pytest.mark.parametrize("encrypted", [True, False])
def test_a_peer_that_hangs_up_during_the_handshake_is_said_once(keys, tiny, encrypted):
    """A bare TCP connect and close (a port check, or a client whose encryption settings
    differ and which noticed first) makes libzmq report a handshake failure with only a
    socket error. The daemon says what that can mean, once, and counts each one."""
    d, allowed = keys
    ep = free_endpoint()
    host, port = ep.removeprefix("tcp://").rsplit(":", 1)
    curve = ["--curve-secret", d / "server.key_secret", "--allow-clients", allowed] if encrypted else []
    proc = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "1", "--json", "--stats",
                 "--stats-interval", "0.2", *curve, sorted(EXAMPLES.glob("*.wav"))[0])
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    assert err.wait_for("publishing on", 60), err.text()
    for _ in range(3):
        socket.create_connection((host, int(port)), timeout=10).close()
        time.sleep(0.05)
    proc.wait(timeout=60)
    stderr = err.text()
    assert proc.returncode == 0, stderr
    stats = [json.loads(x) for x in out.text().splitlines() if '"type":"stats"' in x]
    assert stats[-1]["handshakes_failed"] == 3, stats[-1]
    said = [ln for ln in stderr.splitlines() if "hung up during the handshake" in ln]
    assert 1 <= len(said) <= 2 and len(set(said)) == len(said), stderr
    assert all("WARNING: lost a connection from " in ln and "a bare port check" in ln for ln in said), said
    wording = "a client that does not use CurveZMQ" if encrypted else "a client that asks for CurveZMQ"
    assert all(wording in ln for ln in said), said


@pytest.mark.parametrize("case, needle", [
    ("public_as_secret", "holds no secret key"),
    ("missing", "key file not found"),
    ("world_readable", "readable by others"),
    ("allow_without_curve", "needs --curve-secret"),
    ("empty_allow_dir", "no public keys"),
    ("malformed_allowed_key", "garbage.key: not a readable ZeroMQ key file"),
    ("unreadable_allowed_key", "locked.key: not a readable ZeroMQ key file (Permission denied)"),
    ("fifo_allowed_key", "pipe.key: not a regular file"),
    ("world_writable_allow_dir", "writable by others"),
    ("group_writable_key_dir", "writable by others"),
    ("malformed_secret_key", "no 40-character secret key"),
])
def test_bad_key_setups_fail_clearly(keys, tiny, tmp_path, case, needle):
    """Refused at start-up, in one line: before, one unreadable key in the allow
    directory made every client fail while the daemon said encryption was on."""
    d, allowed = keys
    clip = sorted(EXAMPLES.glob("*.wav"))[0]
    args = ["replay", "--model", tiny, "--bind", free_endpoint(), "--speed", "0", "--quiet"]
    with_allowed = ["--curve-secret", d / "server.key_secret", "--allow-clients", allowed]
    if case == "public_as_secret":
        args += ["--curve-secret", d / "server.key"]
    elif case == "missing":
        args += ["--curve-secret", d / "nope.key_secret"]
    elif case == "world_readable":
        (d / "server.key_secret").chmod(0o644)
        args += ["--curve-secret", d / "server.key_secret"]
    elif case == "allow_without_curve":
        args += ["--allow-clients", allowed]
    elif case == "empty_allow_dir":
        empty = tmp_path / "empty"
        empty.mkdir()
        args += ["--curve-secret", d / "server.key_secret", "--allow-clients", empty]
    elif case == "malformed_allowed_key":
        (allowed / "garbage.key").write_text("not a key\n")
        args += with_allowed
    elif case == "unreadable_allowed_key":
        shutil.copy(d / "mallory.key", allowed / "locked.key")
        (allowed / "locked.key").chmod(0)
        args += with_allowed
    elif case == "fifo_allowed_key":
        os.mkfifo(allowed / "pipe.key")
        args += with_allowed
    elif case == "world_writable_allow_dir":
        allowed.chmod(0o777)
        args += with_allowed
    elif case == "group_writable_key_dir":
        d.chmod(0o770)
        args += ["--curve-secret", d / "server.key_secret"]
    elif case == "malformed_secret_key":  # with an allow-list, this hung start-up for ever
        secret = d / "server.key_secret"
        text = secret.read_text()
        value = text.split('secret-key = "', 1)[1].split('"', 1)[0]
        secret.write_text(text.replace(value, value[:20]))
        args += with_allowed
    r = serstream(*args, clip, prefix=permissions_apply())
    assert r.returncode == 2, r.stderr
    assert_one_line_error(r.stderr, needle)


def test_refused_handshakes_are_counted_and_logged_once_per_peer(keys, tiny):
    """Three clients that cannot get in: a key not allowed in, a wrong server key (which
    ZeroMQ retries every 100 ms), no encryption. The daemon counts every refusal in stats
    and says each once, not once per retry.

    The client without encryption is said one of two ways, both naming what it lacks:
    the greetings cross, and whichever end reads the other's mechanism first ends it, so
    the daemon either sees the mismatch itself or sees the client hang up."""
    d, allowed = keys
    ep = free_endpoint()
    clip = sorted(EXAMPLES.glob("*.wav"))[0]
    proc = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "1", "--json", "--stats",
                 "--stats-interval", "0.2", "--curve-secret", d / "server.key_secret", "--allow-clients", allowed,
                 clip)
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    assert err.wait_for("publishing on", 60), err.text()
    clients = [
        Subscriber(ep, curve=CurveClient(d / "server.key", d / "mallory.key_secret")),  # not allowed
        Subscriber(ep, curve=CurveClient(d / "mallory.key", d / "alice.key_secret")),  # wrong server key
        Subscriber(ep),  # no encryption
    ]
    try:
        proc.wait(timeout=60)
    finally:
        for c in clients:
            c.close()
    stderr = err.text()
    assert proc.returncode == 0, stderr
    stats = [json.loads(x) for x in out.text().splitlines() if '"type":"stats"' in x]
    assert stats[-1]["handshakes_failed"] >= 6, stats[-1]  # each client, retried
    lines = stderr.splitlines()
    for needle in ("is not in --allow-clients", "did not decrypt", "does not use CurveZMQ"):
        said = [re.sub(r"(127\.0\.0\.1):\d+", r"\1", ln) for ln in lines if needle in ln]
        # once for the peer, not once per retry (each retry comes from a new port): said apart
        # only when the reason differs, or when a connection refused at once was gone before
        # its address could be read
        assert said and len(set(said)) == len(said), (needle, stderr)
    assert "127.0.0.1" in [ln for ln in lines if "is not in --allow-clients" in ln][0]


@pytest.mark.parametrize("case, needle", [
    ("no_daemon", "nothing accepts connections there"),
    ("wrong_server_key", "the CurveZMQ handshake failed"),
    ("not_allowed", "does not allow this client's key"),
    ("plaintext_to_encrypted", "does the daemon expect CurveZMQ keys"),
])
def test_listen_says_why_nothing_arrives(keys, tiny, case, needle):
    """listen tells a person what is wrong after a few seconds, and --timeout with
    nothing received is a failure (exit 1), not a silent success."""
    d, allowed = keys
    ep = free_endpoint()
    daemon = None
    if case != "no_daemon":
        daemon = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "1", "--quiet",
                       "--curve-secret", d / "server.key_secret", "--allow-clients", allowed,
                       *sorted(EXAMPLES.glob("*.wav")))
        assert Lines(daemon.stderr).wait_for("publishing on", 60)
    keys_for = {
        "wrong_server_key": ["--curve-server-key", d / "mallory.key", "--curve-secret", d / "alice.key_secret"],
        "not_allowed": ["--curve-server-key", d / "server.key", "--curve-secret", d / "mallory.key_secret"],
    }
    t0 = time.monotonic()
    r = serstream("listen", "--connect", ep, "--timeout", "5", *keys_for.get(case, []))
    took = time.monotonic() - t0
    if daemon is not None:
        daemon.terminate()
        daemon.wait(timeout=30)
    assert r.returncode == 1, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "WARNING" in ln and needle in ln]
    assert len(warnings) == 1, r.stderr  # said once, while still waiting
    assert_one_line_error(r.stderr, "nothing received in 5 s", needle)
    assert took >= 5

"""Who may listen: loopback by default, a warning for unencrypted network binds,
CurveZMQ encryption with an allow-list of client keys, and secrets kept secret."""

from __future__ import annotations

import shutil
import stat

import pytest

from procs import EXAMPLES, assert_one_line_error, collect, free_endpoint, serstream, spawn
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


@pytest.mark.parametrize("case, needle", [
    ("public_as_secret", "holds no secret key"),
    ("missing", "key file not found"),
    ("world_readable", "readable by others"),
    ("allow_without_curve", "needs --curve-secret"),
    ("empty_allow_dir", "no public keys"),
])
def test_bad_key_setups_fail_clearly(keys, tiny, tmp_path, case, needle):
    d, allowed = keys
    clip = sorted(EXAMPLES.glob("*.wav"))[0]
    args = ["replay", "--model", tiny, "--bind", free_endpoint(), "--speed", "0", "--quiet"]
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
    r = serstream(*args, clip)
    assert r.returncode == 2, r.stderr
    assert_one_line_error(r.stderr, needle)

"""Running as a service: ``run --config FILE.toml`` (every option a key, flags win, unknown
keys refused), ``--print-config``, systemd's readiness protocol heard on a real Unix
datagram socket, JSON log lines, and the shipped unit file and example configuration."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import signal
import socket
from pathlib import Path

import pytest
import zmq

from procs import EXAMPLES, ROOT, Lines, assert_one_line_error, free_endpoint, serstream, spawn
from serstream.capture import CaptureConfig
from serstream.cli import _subcommand, build_parser
from serstream.client import Subscriber
from serstream.config_file import keys, load
from serstream.notify import notify
from serstream.publish import PublishConfig
from serstream.stopping import STOP_BUDGET_S

CLIP = EXAMPLES / "sad_savee_DC_sa01.wav"


def _effective(text: str) -> dict[str, str]:
    """``--print-config``'s settings (comments left out) as key -> TOML value text."""
    return dict(ln.split(" = ", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))


def test_every_option_of_run_is_a_key():
    run = _subcommand("run")
    flags = {s.lstrip("-") for a in run._actions for s in a.option_strings if s.startswith("--")}
    flags -= {"help", "config", "print-config", "print", "json", "quiet"}
    assert set(keys(run)) == flags | {"output"}


def test_print_config_shows_defaults_from_the_configuration_classes():
    r = serstream("run", "--print-config")
    assert r.returncode == 0, r.stderr
    got = _effective(r.stdout)
    assert got["hwm"] == str(PublishConfig().hwm) and got["channels"] == str(CaptureConfig().channels)
    assert got["output"] == '"quiet"'  # run's default: publish only
    assert "# hangover-ms: unset" in r.stdout  # the model decides: a comment, not a value


def test_config_file_then_flags_and_the_printed_file_reads_back(tmp_path):
    cfg = tmp_path / "serstream.toml"
    cfg.write_text('hwm = 7\nhangover-ms = 600\noutput = "json"\nsource-id = "desk"\nstats-interval = 2\n'
                   'device = 3\nstats = true\n')
    r = serstream("run", "--config", cfg, "--print-config", "--hwm", "9")
    assert r.returncode == 0, r.stderr
    got = _effective(r.stdout)
    assert got["hwm"] == "9"  # the flag wins over the file
    assert got["hangover-ms"] == "600" and got["output"] == '"json"' and got["source-id"] == '"desk"'
    assert got["stats-interval"] == "2.0" and got["device"] == '"3"' and got["stats"] == "true"
    again = tmp_path / "printed.toml"
    again.write_text(r.stdout)
    r2 = serstream("run", "--config", again, "--print-config")
    assert r2.returncode == 0, r2.stderr
    assert _effective(r2.stdout) == got


@pytest.mark.parametrize("text, needle", [
    ("hangover_ms = 300\n", "unknown key 'hangover_ms'; did you mean 'hangover-ms'"),
    ("[vad]\nhangover-ms = 300\n", "unknown key 'vad'"),
    ('hwm = "many"\n', "hwm must be an integer"),
    ("stats = 1\n", "stats must be true or false"),
    ('output = "loud"\n', 'output must be one of "print", "json", "quiet"'),
    ("vad-aggressiveness = 7\n", "vad-aggressiveness must be one of 0, 1, 2, 3"),
    ("hwm = \n", "not valid TOML"),
])
def test_bad_config_files_are_one_line_errors(tmp_path, text, needle):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = serstream("run", "--config", cfg, "--print-config")
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert_one_line_error(r.stderr, needle)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_missing_config_file(tmp_path):
    r = serstream("run", "--config", tmp_path / "nope.toml")
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "config file not found")


def test_notify_speaks_the_sd_notify_protocol(tmp_path, monkeypatch):
    """Datagrams on a real Unix socket, a path or an abstract name; without one, nothing."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1", "STATUS=up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"
    name = f"serstream-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone.sock"))
    assert not notify("READY=1")  # nobody listening: logged, never raised
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify("READY=1")


def test_run_tells_systemd_when_it_is_ready_and_when_it_stops(virtual_mic, tiny, tmp_path):
    """READY=1 comes once the model is loaded and the socket bound; SIGTERM brings
    STOPPING=1, then a clean exit. The daemon's settings come from a config file."""
    ep = free_endpoint()
    cfg = tmp_path / "serstream.toml"
    cfg.write_text(f'model = "{tiny}"\nbind = "{ep}"\nsource-id = "desk"\nlog-format = "json"\n'
                   'stats-interval = 0.3\n')
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(120)
        daemon = spawn("run", "--config", cfg, env={"NOTIFY_SOCKET": str(path)})
        err = Lines(daemon.stderr)
        ready = sock.recv(4096).decode().splitlines()
        assert ready[0] == "READY=1" and ready[1].startswith(f"STATUS=publishing on {ep}"), ready
        # at READY the socket is bound (nobody else can take the port) and the model was loaded
        probe = zmq.Context.instance().socket(zmq.PUB)
        probe.setsockopt(zmq.LINGER, 0)
        with pytest.raises(zmq.ZMQError):
            probe.bind(ep)
        probe.close()
        assert err.wait_for('"message": "model ', 1), err.text()
        with Subscriber(ep, topics=("stats",)) as sub:  # the file's settings are the daemon's
            stats = sub.recv(timeout=60)
        assert stats is not None and stats["source"] == "desk", stats
        daemon.send_signal(signal.SIGTERM)
        stopping = sock.recv(4096).decode().splitlines()
        assert stopping[0] == "STOPPING=1", stopping
        daemon.wait(timeout=60)
    text = err.text()
    assert daemon.returncode == 0, text
    logged = [json.loads(ln) for ln in text.splitlines()]  # every line is a JSON object
    assert {d["level"] for d in logged} <= {"info", "warning"}
    assert any(d["message"].startswith("SIGTERM received") for d in logged)


def test_json_log_lines_for_errors_too(tiny, tmp_path):
    r = serstream("replay", "--model", tiny, "--no-publish", "--quiet", "--speed", "0", "--log-format", "json",
                  CLIP, tmp_path / "missing.wav")
    assert r.returncode == 1
    logged = [json.loads(ln) for ln in r.stderr.splitlines()]
    assert all(set(d) >= {"time", "level", "logger", "message"} for d in logged)
    assert any(d["level"] == "error" and "missing.wav" in d["message"] for d in logged)
    r = serstream("run", "--log-format", "json", "--hwm", "0", "--model", tiny)
    assert r.returncode == 2
    last = json.loads(r.stderr.splitlines()[-1])
    assert last["level"] == "error" and last["message"] == "--hwm must be in [1, 1000000] messages, got 0"


def test_the_unit_file_and_the_example_configuration():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(ROOT / "packaging" / "serstream.service")
    svc = unit["Service"]
    assert svc["Type"] == "notify" and svc["Restart"] == "on-failure"
    assert svc["User"] == "serstream"
    # the stop timeout outlasts the daemon's own promise: out within STOP_BUDGET_S of SIGTERM,
    # however far behind (tests/test_stopping.py)
    assert int(svc["TimeoutStopSec"]) > 2 * STOP_BUDGET_S
    argv = shlex.split(svc["ExecStart"])
    assert argv[0].endswith("/serstream")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.config == Path("/etc/serstream/serstream.toml")
    example = ROOT / "packaging" / "serstream.toml"
    assert load(example, _subcommand("run"))["source_id"] == "mic:room-1"
    r = serstream("run", "--config", example, "--print-config")
    assert r.returncode == 0, r.stderr
    assert _effective(r.stdout)["bind"] == '"tcp://127.0.0.1:5556"'

"""The command line as a user meets it: the same output options on run and replay, help
that states every default, output into a closed pipe, listen's idle timeout, and the
lines printed on Ctrl-C and at exit."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from messages import event
from procs import EXAMPLES, ROOT, Lines, free_endpoint, hearing, serstream, spawn
from serstream.cli import build_parser
from serstream.client import Subscriber
from serstream.events import Stamper
from serstream.pipeline import PipelineConfig
from serstream.publish import PublishConfig, Publisher

CLIP = EXAMPLES / "sad_savee_DC_sa01.wav"


def _subparsers():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sub.choices


def _options(p) -> dict[str, object]:
    return {s: a for a in p._actions for s in a.option_strings}


def test_run_and_replay_take_the_same_output_options():
    cmds = _subparsers()
    for cmd in ("run", "replay"):
        assert {"--print", "--json", "--quiet", "--stats"} <= set(_options(cmds[cmd])), cmd
    assert build_parser().parse_args(["replay", "--print", "x.wav"]).output == "text"
    assert build_parser().parse_args(["run", "--stats"]).stats


def test_every_option_says_what_it_does_and_defaults_come_from_the_configuration():
    for name, p in _subparsers().items():
        for action in p._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
    replay = _subparsers()["replay"]
    text = " ".join(replay.format_help().split())  # argparse wraps lines where it likes
    assert f"(default: {PublishConfig().hwm})" in text
    assert f"(default: {PipelineConfig().stats_interval})" in text
    assert PublishConfig.bind in text
    assert PublishConfig.bind in _subparsers()["listen"].format_help()


@pytest.mark.parametrize("args", [["info"], ["devices"], ["replay", "--speed", "0", "--no-publish", str(CLIP)]])
def test_output_into_a_closed_pipe_is_a_quiet_exit(virtual_mic, args):
    """`serstream info | head -1`: the reader has gone; the command stops, exit 0, no error."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        r = subprocess.run([sys.executable, "-m", "serstream", *args], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    finally:
        os.close(write_end)
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr.lower() and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("name", ["whisper", "fast"])
def test_info_shows_every_figure_of_a_shipped_model(name):
    r = serstream("info", name)
    assert r.returncode == 0, r.stderr
    for corpus in ("cremad", "ravdess", "savee", "tess"):
        assert f"test_metrics.{corpus}" in r.stdout  # one line each: none cut off
    assert all(len(line) < 260 for line in r.stdout.splitlines())


def test_info_marks_what_it_cuts(tmp_path):
    """A long value is cut on its line with a mark saying how much is left out, and a
    multi-line one shows its first line and how many more: --json has them whole."""
    from dataclasses import replace

    from tiny_model import build, metadata

    long_value = "figure " * 60 + "THE-END"
    licence = "first line of a licence\nsecond\nthird"
    path = build(tmp_path / "m.onnx", replace(metadata(), provenance={"notes": long_value, "licence": licence}))
    r = serstream("info", path)
    assert r.returncode == 0, r.stderr
    rows = {ln.split(None, 1)[0]: ln.split(None, 1)[1] for ln in r.stdout.splitlines()}
    m = re.fullmatch(r"(.*)… \(\+(\d+) chars, see --json\)", rows["notes"])
    assert m and long_value.startswith(m[1]) and len(m[1]) + int(m[2]) == len(long_value), rows["notes"]
    assert rows["licence"] == "first line of a licence (+2 lines, see --json)"
    full = json.loads(serstream("info", path, "--json").stdout)["provenance"]
    assert full == {"notes": long_value, "licence": licence}


def test_listen_timeout_is_an_idle_timeout():
    """A message every 0.25 s for 5 s, with --timeout 3: every message is printed (the
    timeout restarts with each), then listen exits on its own once they stop."""
    ep = free_endpoint()
    pub = Publisher(PublishConfig(bind=ep))
    stamper = Stamper()
    listener = spawn("listen", "--connect", ep, "--json", "--timeout", "3")
    try:
        assert pub.wait_for_subscriber(60)
        n = 20
        for i in range(n):
            pub.send(stamper.stamp(event(i)))
            time.sleep(0.25)
        out, err = listener.communicate(timeout=60)
    finally:
        pub.close()
    assert listener.returncode == 0, err
    assert [json.loads(x)["segment"] for x in out.splitlines()] == list(range(n)), err


def test_listen_on_ctrl_c_says_it_is_stopping():
    listener = spawn("listen", "--connect", free_endpoint())
    err = Lines(listener.stderr)
    assert err.wait_for("listening to", 60), err.text()
    listener.send_signal(signal.SIGINT)
    listener.wait(timeout=30)
    text = err.text()
    assert listener.returncode == 0, text
    assert "SIGINT received: stopping" in text and "segment" not in text


def test_replay_prints_a_summary_at_exit(tiny):
    r = serstream("replay", "--model", tiny, "--speed", "0", "--no-publish", "--quiet", CLIP)
    assert r.returncode == 0 and r.stdout == ""
    assert "replayed 1 of 1 files: 1 segments" in r.stderr


def test_run_prints_a_summary_at_exit(virtual_mic, tiny):
    """Like replay, run says on stderr what it did when it exits: how much audio it
    captured from which device, and the segments and events it found in it."""
    ep = free_endpoint()
    daemon = spawn("run", "--model", tiny, "--bind", ep, "--stats-interval", "0.3")
    err = Lines(daemon.stderr)
    with Subscriber(ep, topics=("stats",)) as sub:
        hearing(sub)
    virtual_mic.play(CLIP).wait(timeout=60)
    daemon.send_signal(signal.SIGINT)  # the segment in progress, if any, is closed and counted
    daemon.wait(timeout=60)
    text = err.text()
    assert daemon.returncode == 0, text
    (summary,) = [ln for ln in text.splitlines() if "captured" in ln]
    m = re.search(r"captured (\d+\.\d) s from '([^']+)': (\d+) segments, (\d+) events", summary)
    assert m, summary
    assert float(m[1]) > 0 and int(m[3]) >= 1 and int(m[4]) >= int(m[3]), summary


def test_quiet_and_stats_contradict(tiny):
    r = serstream("replay", "--model", tiny, "--no-publish", "--quiet", "--stats", CLIP)
    assert r.returncode == 2 and "--stats" in r.stderr and "Traceback" not in r.stderr


def test_listen_stops_waiting_without_a_daemon():
    r = serstream("listen", "--connect", free_endpoint(), "--timeout", "1", "--count", "1")
    assert r.returncode == 1 and "received 0 of 1 events before timing out" in r.stderr

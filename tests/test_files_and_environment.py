"""Files and the environment as users have them: per-file OS errors in a batch, FIFOs and
standard input (real pipes), a package numba cannot cache, an IPv6 endpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading

import soundfile as sf

from procs import EXAMPLES, ROOT, collect, free_endpoint, permissions_apply, serstream, spawn
from serstream.client import Subscriber

CLIP = EXAMPLES / "sad_savee_DC_sa01.wav"


def _finals(stdout: str) -> list[dict]:
    return [m for m in map(json.loads, stdout.splitlines()) if m["type"] == "emotion" and m["final"]]


def test_every_per_file_os_error_is_that_files_failure_and_the_batch_goes_on(tiny, tmp_path):
    """A file in a folder without permission, a name longer than the OS allows, a link to
    nothing: each one line naming the file and why; the good files before and after are
    replayed, exit 1 (before: the first one ended the batch with `unexpected PermissionError`)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(CLIP, locked / "clip.wav")
    locked.chmod(0)
    too_long = tmp_path / ("x" * 300 + ".wav")
    dangling = tmp_path / "gone.wav"
    dangling.symlink_to(tmp_path / "nowhere.wav")
    bad = [locked / "clip.wav", too_long, dangling]
    try:
        r = serstream("replay", "--model", tiny, "--no-publish", "--json", "--speed", "0",
                      CLIP, *bad, EXAMPLES / "surprise_savee_JE_su01.wav", prefix=permissions_apply())
    finally:
        locked.chmod(0o700)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr
    assert {f["source"] for f in _finals(r.stdout)} == {str(CLIP), str(EXAMPLES / "surprise_savee_JE_su01.wav")}
    for path, why in zip(bad, ("Permission denied", "File name too long", "no such file"), strict=True):
        lines = [ln for ln in r.stderr.splitlines() if "ERROR" in ln and f"{path}: {why}" in ln]
        assert len(lines) == 1, (path, r.stderr)
    assert "3 of 5 files failed" in r.stderr


def test_a_fifo_is_read_not_called_empty(tiny, tmp_path):
    fifo = tmp_path / "live.wav"
    os.mkfifo(fifo)
    data = CLIP.read_bytes()

    def write() -> None:
        with open(fifo, "wb") as f:  # blocks until the replay opens it for reading
            f.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    r = serstream("replay", "--model", tiny, "--no-publish", "--json", "--speed", "0", fifo)
    writer.join(timeout=10)
    assert r.returncode == 0, r.stderr
    assert [f["source"] for f in _finals(r.stdout)] == [str(fifo)]


def _pipe_into_replay(tiny, producer: list[str], *args: str) -> subprocess.CompletedProcess:
    """``producer | serstream replay ... -``, two real processes and a real pipe."""
    source = subprocess.Popen(producer, stdout=subprocess.PIPE)
    try:
        return subprocess.run([sys.executable, "-m", "serstream", "replay", "--model", str(tiny), "--no-publish",
                               "--json", "--speed", "0", *args, "-"],
                              stdin=source.stdout, capture_output=True, text=True, timeout=120, cwd=ROOT)
    finally:
        source.stdout.close()
        source.wait(timeout=30)


def test_replay_reads_standard_input_through_a_pipe(tiny, tmp_path):
    """`sox ... -t wav - | serstream replay -`: a WAV whose header cannot say its length
    (sox writes the largest size when it cannot seek back), produced by another process."""
    writer = tmp_path / "stream_wav.py"
    writer.write_text(
        "import sys, soundfile as sf\n"
        f"y, sr = sf.read({str(CLIP)!r}, dtype='int16')\n"
        "head = bytearray(open(" + repr(str(CLIP)) + ", 'rb').read(44))\n"
        "head[4:8] = head[40:44] = b'\\xff\\xff\\xff\\xff'  # sizes unknown: a stream\n"
        "sys.stdout.buffer.write(bytes(head))\n"
        "for i in range(0, len(y), 1600):\n"
        "    sys.stdout.buffer.write(y[i:i + 1600].tobytes()); sys.stdout.buffer.flush()\n")
    r = _pipe_into_replay(tiny, [sys.executable, str(writer)])
    assert r.returncode == 0, r.stderr
    finals = _finals(r.stdout)
    assert [f["source"] for f in finals] == ["stdin"]
    direct = serstream("replay", "--model", tiny, "--no-publish", "--json", "--speed", "0", CLIP)
    assert [(f["start"], f["end"], f["label"]) for f in finals] == \
           [(f["start"], f["end"], f["label"]) for f in _finals(direct.stdout)]
    # a complete file through `cat`, named by the path /dev/stdin: read, not "empty file"
    source = subprocess.Popen(["cat", str(CLIP)], stdout=subprocess.PIPE)
    r = subprocess.run([sys.executable, "-m", "serstream", "replay", "--model", str(tiny), "--no-publish",
                        "--json", "--speed", "0", "/dev/stdin"], stdin=source.stdout, capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    source.stdout.close()
    source.wait(timeout=30)
    assert r.returncode == 0 and len(_finals(r.stdout)) == 1, r.stderr


def test_a_format_that_cannot_come_through_a_pipe_says_so(tiny, tmp_path):
    flac = tmp_path / "clip.flac"
    sf.write(flac, sf.read(CLIP)[0], 16000)
    r = _pipe_into_replay(tiny, ["cat", str(flac)])
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if "ERROR" in ln and "cannot decode" in ln]
    assert len(lines) == 1 and "send WAV, AIFF or AU" in lines[0], r.stderr
    r = serstream("replay", "--model", tiny, "--no-publish", "-", "-")
    assert r.returncode == 2 and "only once" in r.stderr


def test_it_starts_where_numba_cannot_write_its_cache(tiny, tmp_path):
    """serstream installed read-only, a read-only home, an uncreatable NUMBA_CACHE_DIR:
    it starts, says once that it compiles without the cache, and works (before:
    `unexpected RuntimeError: cannot cache function`)."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "serstream", site / "serstream", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "models"))
    home = tmp_path / "home"
    home.mkdir()
    for d in [home, *sorted((site / "serstream").rglob("*"), reverse=True), site / "serstream", site]:
        if d.is_dir():
            d.chmod(0o555)
    env = {**os.environ, "HOME": str(home), "NUMBA_CACHE_DIR": "/proc/serstream-cannot-be-here",
           "PYTHONPATH": str(site)}
    try:
        r = subprocess.run([*permissions_apply(), sys.executable, "-m", "serstream", "replay", "--model", str(tiny),
                            "--no-publish", "--json", "--speed", "0", str(CLIP)],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)
    finally:
        for d in [site, *site.rglob("*"), home]:
            if d.is_dir():
                d.chmod(0o755)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("numba cannot write its compilation cache") == 1, r.stderr
    assert len(_finals(r.stdout)) == 1
    assert not list(site.rglob("__pycache__/*.nbi"))  # nothing was written into the package


def test_an_ipv6_endpoint_publishes(tiny):
    port = free_endpoint().rsplit(":", 1)[1]
    ep = f"tcp://[::1]:{port}"
    with Subscriber(ep, topics=("emotion",)) as sub:
        proc = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "0", "--quiet", "--wait-subscriber", "30",
                     CLIP)
        got = collect(sub, proc)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "No such device" not in err and got and got[-1]["final"]
    assert len([e for e in got if e["final"]]) == 1

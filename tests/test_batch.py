"""Batch results from ``replay``: a row per segment (``--output``), a row per file
(``--summary``), as CSV or JSON lines; progress on stderr (a bar on a terminal, lines
otherwise, nothing with ``--quiet``); and ``--jobs N`` worker processes giving the very
output of one process, in input order."""

from __future__ import annotations

import csv
import json
import os
import pty
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf
from test_events import _valid

from procs import EXAMPLES, ROOT, assert_one_line_error, serstream

CLIPS = sorted(EXAMPLES.glob("*.wav"))[:3]
TIMING = {"wall_start", "wall_end", "published_at", "processing_ms", "features_ms", "inference_ms", "uptime_s",
          "buffered_s", "session", "level_rms_dbfs", "level_peak_dbfs"}


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad") / "broken.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    return path


def _lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines()]


def _replay(tiny, *args):
    return serstream("replay", "--model", tiny, "--speed", "0", "--no-publish", *args, timeout=300)


def test_rows_and_summary_come_from_the_published_messages(tiny, tmp_path, broken):
    files = [CLIPS[0], broken, *CLIPS[1:]]
    seg_jsonl, seg_csv = tmp_path / "segments.jsonl", tmp_path / "segments.csv"
    sum_jsonl, sum_csv = tmp_path / "files.jsonl", tmp_path / "files.csv"
    r = _replay(tiny, "--json", "--output", seg_jsonl, "--summary", sum_jsonl, *files)
    assert r.returncode == 1, r.stderr  # one file failed, the others were scored
    printed = _lines(r.stdout)
    finals = [m for m in printed if m["final"]]
    # --output .jsonl: the final events exactly as printed (and published): valid messages
    rows = _valid(_lines(seg_jsonl.read_text()))
    assert rows == finals and len(rows) >= len(CLIPS)
    # the same replay into CSV: one row per final event, one column per label
    r = _replay(tiny, "--quiet", "--output", seg_csv, "--summary", sum_csv, *files)
    with open(seg_csv, newline="") as f:
        table = list(csv.DictReader(f))
    labels = list(finals[0]["probabilities"])
    assert [k for k in table[0] if k.startswith("prob_")] == [f"prob_{lab}" for lab in labels]
    assert [(t["source"], int(t["segment"]), t["label"]) for t in table] == \
        [(m["source"], m["segment"], m["label"]) for m in finals]
    for t, m in zip(table, finals, strict=True):
        assert float(t["confidence"]) == m["confidence"]
        assert [float(t[f"prob_{lab}"]) for lab in labels] == list(m["probabilities"].values())
    # --summary: one row per input file, in input order, the failure on its own row
    summary = _lines(sum_jsonl.read_text())
    assert [s["file"] for s in summary] == list(map(str, files))
    bad = summary[1]
    assert "broken.wav" in bad["error"] and bad["segments"] == 0 and bad["label"] is None
    for s, path in zip(summary, files, strict=True):
        if path == broken:
            continue
        assert s["error"] is None
        assert s["duration_s"] == pytest.approx(sf.info(str(path)).duration, abs=0.02)
        mine = [m for m in finals if m["source"] == str(path)]
        assert s["segments"] == len(mine) > 0
        w = np.array([m["end"] - m["start"] for m in mine])
        p = np.array([[m["probabilities"][lab] for lab in labels] for m in mine])
        mean = (w[:, None] * p).sum(axis=0) / w.sum()
        assert s["label"] == labels[int(np.argmax(mean))]
        assert s["confidence"] == pytest.approx(mean.max(), abs=1e-4)
        assert list(s["probabilities"].values()) == pytest.approx(list(mean), abs=1e-4)
    with open(sum_csv, newline="") as f:
        as_csv = list(csv.DictReader(f))
    assert [(c["file"], c["label"], c["segments"]) for c in as_csv] == \
        [(s["file"], s["label"] or "", str(s["segments"])) for s in summary]
    assert "broken.wav" in as_csv[1]["error"]


@pytest.mark.parametrize("args, needle", [
    (["--output", "rows.txt"], "--output rows.txt: the extension says the format: .csv or .jsonl"),
    (["--summary", "/nonexistent/dir/s.csv"], "--summary /nonexistent/dir/s.csv: cannot write"),
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--jobs", "2", "--speed", "1"], "use it with --speed 0"),
])
def test_bad_batch_options(tiny, args, needle):
    r = serstream("replay", "--model", tiny, "--no-publish", *args, CLIPS[0])
    assert r.returncode == 2, r.stderr
    assert_one_line_error(r.stderr, needle)


def test_progress_lines_when_not_a_terminal_and_none_with_quiet(tiny):
    r = _replay(tiny, "--progress-interval", "0", *CLIPS)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "progress:" in ln]
    assert lines and "\r" not in r.stderr
    assert f"progress: {len(CLIPS)}/{len(CLIPS)} files" in lines[-1] and "x real time" in lines[-1]
    assert "0:00:00 left" in lines[-1]
    done = [int(ln.split("progress: ")[1].split("/")[0]) for ln in lines]
    assert done == sorted(done)  # files done only go up
    r = _replay(tiny, "--quiet", "--progress-interval", "0", *CLIPS)
    assert r.returncode == 0 and "progress" not in r.stderr


def test_progress_is_a_bar_on_a_terminal(tiny):
    """stderr on a pseudo-terminal: one line redrawn in place, ended when the replay ends."""
    leader, follower = pty.openpty()
    chunks: list[bytes] = []

    def drain() -> None:  # read as it comes: a full terminal buffer would block the writer
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.Popen([sys.executable, "-m", "serstream", "replay", "--model", str(tiny), "--speed", "0",
                             "--no-publish", *map(str, CLIPS)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=follower, text=True)
    os.close(follower)
    out, _ = proc.communicate(timeout=300)
    reader.join(timeout=30)
    os.close(leader)
    err = b"".join(chunks).decode()
    assert proc.returncode == 0, err
    assert "\r[" in err and "\x1b[K" in err
    assert f"] {len(CLIPS)}/{len(CLIPS)} files" in err
    assert "progress:" not in err  # a bar, not log lines
    assert out.count(" final ") == len(CLIPS)


def test_jobs_give_the_output_of_one_process_in_input_order(tiny, tmp_path, broken):
    files = [*CLIPS, broken, *sorted(EXAMPLES.glob("*.wav"))[3:]]
    one = _replay(tiny, "--json", "--stats", "--summary", tmp_path / "one.csv", *files)
    two = _replay(tiny, "--json", "--stats", "--jobs", "2", "--summary", tmp_path / "two.csv", *files)
    assert one.returncode == two.returncode == 1, two.stderr
    a, b = _valid(_lines(one.stdout)), _valid(_lines(two.stdout))
    assert len({m["session"] for m in b}) == 1  # stamped once, by the parent
    for kind in ("emotion", "stats"):
        assert [m["seq"] for m in b if m["type"] == kind] == list(range(sum(m["type"] == kind for m in b)))
    emotion = [{k: v for k, v in m.items() if k not in TIMING} for m in a if m["type"] == "emotion"]
    assert emotion == [{k: v for k, v in m.items() if k not in TIMING} for m in b if m["type"] == "emotion"]
    # the stats after each file: the same running totals as one pipeline going through them
    def last_per_file(ms):
        per = {}
        for m in ms:
            if m["type"] == "stats":
                per[m["source"]] = (m["segments"], m["partials"], m["events"], m["errors"], m["stream_s"])
        return per
    assert last_per_file(a) == last_per_file(b)
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "two.csv").read_text()
    assert "broken.wav" in two.stderr and f"replayed {len(files) - 1} of {len(files)} files" in two.stderr

"""``replay --jobs N``: batch scoring in N worker processes against one, measured in the same run."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import soundfile as sf

from bench.common import DATA, ROOT, serstream_cmd


def jobs(model: Path, quick: bool) -> list[str]:
    files = sorted(p for p in DATA.rglob("*") if p.suffix in (".flac", ".ogg"))
    files = files[:: max(1, len(files) // (120 if quick else 400))]
    audio = sum(sf.info(str(f)).duration for f in files)
    counts = (1, 2, 4)
    walls: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as d:
        summaries = {}
        for n in counts:
            out = Path(d) / f"summary-{n}.csv"
            t0 = time.monotonic()
            subprocess.run(serstream_cmd("replay", "--model", model, "--speed", "0", "--no-publish", "--quiet",
                                         "--jobs", n, "--summary", out, *files),
                           cwd=ROOT, check=True, capture_output=True, text=True)
            walls[n] = time.monotonic() - t0
            summaries[n] = [ln.split(",")[:2] for ln in out.read_text().splitlines()]
    same = all(summaries[n] == summaries[1] for n in counts)
    rows = ["| `--jobs` | wall (whole command) | × real time | speed-up vs `--jobs 1` |", "|---|---|---|---|"]
    for n in counts:
        rows.append(f"| {n} | {walls[n]:.1f} s | {audio / walls[n]:,.0f}× | **{walls[1] / walls[n]:.2f}×** |")
    rows += ["", f"{len(files)} corpus files ({audio / 60:.1f} min of audio), `replay --speed 0 --no-publish "
             f"--quiet --summary FILE`, {os.cpu_count()} cores, each worker one ONNX Runtime thread; "
             f"the command's start-up (model load in the parent and in each worker) is included. "
             f"Per-file labels identical for every N: {'yes' if same else 'NO'}."]
    return rows

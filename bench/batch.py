"""``replay --jobs N``: batch scoring in N worker processes against one, measured in the same run."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import soundfile as sf

from bench.common import DATA, ROOT, serstream_cmd


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def jobs(model: Path, quick: bool) -> list[str]:
    """The same files scored with --jobs 1, 2 and 4, taking turns (two rounds, the median
    kept), so a change in how busy the shared machine is moves all of them alike. The
    CPU time the command got over its wall time shows how many cores it really had."""
    files = sorted(p for p in DATA.rglob("*") if p.suffix in (".flac", ".ogg"))
    files = files[:: max(1, len(files) // (120 if quick else 400))]
    audio = sum(sf.info(str(f)).duration for f in files)
    counts = (1, 2, 4)
    walls: dict[int, list[float]] = {n: [] for n in counts}
    cores: dict[int, list[float]] = {n: [] for n in counts}
    loads = [os.getloadavg()[0]]
    labels = {}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(1 if quick else 2):
            for n in counts:
                out = Path(d) / f"summary-{n}.csv"
                cpu0, t0 = _children_cpu(), time.monotonic()
                subprocess.run(serstream_cmd("replay", "--model", model, "--speed", "0", "--no-publish", "--quiet",
                                             "--jobs", n, "--summary", out, *files),
                               cwd=ROOT, check=True, capture_output=True, text=True)
                wall = time.monotonic() - t0
                walls[n].append(wall)
                cores[n].append((_children_cpu() - cpu0) / wall)
                labels[n] = [ln.split(",")[:2] for ln in out.read_text().splitlines()]
                loads.append(os.getloadavg()[0])
    same = all(labels[n] == labels[1] for n in counts)
    wall = {n: statistics.median(w) for n, w in walls.items()}
    rows = ["| `--jobs` | wall (whole command) | × real time | speed-up vs `--jobs 1` | cores it got (CPU time / wall) |",
            "|---|---|---|---|---|"]
    for n in counts:
        rows.append(f"| {n} | {wall[n]:.1f} s | {audio / wall[n]:,.0f}× | **{wall[1] / wall[n]:.2f}×** | "
                    f"{statistics.median(cores[n]):.2f} |")
    rows += ["", f"{len(files)} corpus files ({audio / 60:.1f} min of audio), `replay --speed 0 --no-publish "
             f"--quiet --summary FILE`, {os.cpu_count()} cores, each worker one ONNX Runtime thread; the "
             f"command's start-up (model load in the parent and in each worker) is included; median of "
             f"{len(walls[1])} turns each. Load average (1 min) during the runs: {min(loads):.1f} to "
             f"{max(loads):.1f}, from other work on the machine. Per-file labels identical for every N: "
             f"{'yes' if same else 'NO'}."]
    return rows

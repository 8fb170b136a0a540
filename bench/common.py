"""Shared bits: test audio from the corpora, percentiles, RSS, tables."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
DATA = ROOT.parent / "shared" / "data"
SR = 16000


def speech_clips(n: int, seed: int = 0) -> list[Path]:
    files = sorted(p for p in DATA.rglob("*") if p.suffix in (".flac", ".ogg"))
    rng = np.random.default_rng(seed)
    return [files[i] for i in rng.choice(len(files), size=n, replace=False)]


def joined(clips: list[Path], gap_s: float, path: Path, trimmed: bool = False) -> tuple[Path, float]:
    """Clips separated by ``gap_s`` of silence; returns (file, duration)."""
    from serstream.decode import load_audio
    from serstream.vad import trim

    parts = [np.zeros(int(SR * gap_s), np.float32)]
    for c in clips:
        y = load_audio(c).samples
        parts += [trim(y) if trimmed else y, np.zeros(int(SR * gap_s), np.float32)]
    y = np.concatenate(parts)
    sf.write(path, y, SR)
    return path, y.size / SR


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def serstream_cmd(*args: object) -> list[str]:
    return [sys.executable, "-m", "serstream", *map(str, args)]


def spawn(*args: object, **kw) -> subprocess.Popen:
    return subprocess.Popen(serstream_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, **kw)


def rss_kb(pid: int, field: str = "VmRSS") -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def median_times(fns, repeats: int, block: int = 10) -> list[float]:
    """Median time per call of each function. The functions take turns in blocks of
    ``block`` calls: within a block the caches stay warm for the function measured, as
    in steady use, and a drift in the (virtual) machine's speed, which is large here,
    moves all of them alike instead of favouring whichever ran first."""
    ts: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, repeats // block)):
        for fn, t in zip(fns, ts, strict=True):
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                t.append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in ts]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba
    import onnxruntime

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores; Python {sys.version.split()[0]}, numpy {np.__version__}, "
            f"numba {numba.__version__}, onnxruntime {onnxruntime.__version__}; load average {load}")

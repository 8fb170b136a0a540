"""Test audio: real clips from the shared corpora, and generated signals.

The corpora live in ``../shared/data`` beside the repository (CI clones the repository
with ``shared/`` next to it); see ``../shared/datasets.md`` for their layout. Clips are
read with soundfile directly, not with :mod:`serstream.decode`, so that the feature and
VAD tests do not depend on the code that ``tests/test_decode.py`` checks.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPORA = ("ravdess", "cremad", "tess", "savee")
AUDIO_SUFFIXES = {".flac", ".ogg", ".wav"}


@cache
def clip_paths(corpus: str) -> tuple[Path, ...]:
    """Every audio file of one corpus, sorted (so an index names the same clip each run)."""
    assert corpus in CORPORA, f"unknown corpus {corpus!r}; one of {CORPORA}"
    root = DATA / corpus
    assert root.is_dir(), f"corpus {corpus} not found at {root} (expected ../shared/data beside the repo)"
    paths = tuple(sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES))
    assert paths, f"no audio files under {root}"
    return paths


def clip_path(corpus: str, index: int = 0) -> Path:
    return clip_paths(corpus)[index]


@cache
def _read(path: Path) -> np.ndarray:
    y, sr = sf.read(path, dtype="float32", always_2d=False)
    assert sr == SR and y.ndim == 1, f"{path}: expected 16 kHz mono, got {sr} Hz, shape {y.shape}"
    y.flags.writeable = False  # cached: shared between tests
    return y


def speech_clip(corpus: str, index: int = 0) -> np.ndarray:
    """One real clip of ``corpus`` as 16 kHz mono float32 (a read-only array)."""
    return _read(clip_path(corpus, index))


def speech(seconds: float, offset: float = 0.5) -> np.ndarray:
    """``seconds`` of real speech (float64) from clips of all four corpora joined end to end,
    starting ``offset`` s into the first one, so that short excerpts are not leading silence."""
    joined = np.concatenate([speech_clip(c, i) for i in range(3) for c in CORPORA])
    start = int(offset * SR)
    n = int(round(seconds * SR))
    assert start + n <= joined.size, "not enough speech in the first clips"
    return joined[start : start + n].astype(np.float64)


def noise(n: int, amplitude: float = 0.1, seed: int = 0) -> np.ndarray:
    """White Gaussian noise, float64."""
    return np.random.default_rng(seed).standard_normal(n) * amplitude


def rms(y: np.ndarray) -> float:
    y = np.asarray(y, dtype=np.float64)
    return float(np.sqrt(np.mean(y * y))) if y.size else 0.0

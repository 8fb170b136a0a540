"""What every model kind trains on: the corpora scanned, split by speaker, trimmed by
the daemon's VAD, and weighted so that no corpus or class dominates."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serstream.vad import VadConfig
from train import split as splitting
from train.corpora import LABELS, Clip, Scan, require_clips, scan
from train.dataset import AudioCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """Which clips, cut how, split how: shared by every model kind."""

    sr: int = 16000  # the model's rate: decoding resamples to it, the VAD trims at it
    vad: VadConfig = field(default_factory=VadConfig)
    split: splitting.SplitConfig = field(default_factory=splitting.SplitConfig)
    limit: int | None = None  # clips per corpus (quick runs, tests)
    seed: int = 7


@dataclass
class Part:
    clips: list[Clip]
    audio: list[np.ndarray]  # VAD-trimmed float32 at DataConfig.sr

    def labels(self) -> np.ndarray:
        index = {lab: i for i, lab in enumerate(LABELS)}
        return np.array([index[c.label] for c in self.clips], dtype=np.int64)


@dataclass
class Prepared:
    data: Path
    found: Scan
    parts: dict[str, list[Clip]]
    split_doc: dict
    split_path: Path
    train: Part
    val: Part
    cache: AudioCache


def limit_per_corpus(clips: list[Clip], n: int | None, seed: int) -> list[Clip]:
    if n is None:
        return clips
    rng = np.random.default_rng(seed)
    out = []
    for corpus in sorted({c.corpus for c in clips}):
        sub = [c for c in clips if c.corpus == corpus]
        idx = rng.permutation(len(sub))[:n]
        out += [sub[i] for i in sorted(idx)]
    return out


def prepare(data: Path, out_dir: Path, cache_dir: Path, name: str, config: DataConfig) -> Prepared:
    """Scan, split (written next to the model as ``NAME.split.json``), decode and trim."""
    found = scan(data)
    clips = limit_per_corpus(require_clips(found, data), config.limit, config.seed)
    parts = splitting.split(clips, config.split)
    split_doc = splitting.describe(parts, config.split, root=data)
    out_dir.mkdir(parents=True, exist_ok=True)
    split_path = out_dir / f"{name}.split.json"
    splitting.write(split_path, split_doc)
    for p in splitting.PARTS:
        log.info("split %-5s %5d clips  %s", p, len(parts[p]),
                 {k: len(v) for k, v in split_doc["parts"][p]["groups"].items()})
    cache = AudioCache(cache_dir, config.vad, config.sr)
    train = Part(*cache.trimmed(parts["train"]))
    val = Part(*cache.trimmed(parts["val"]))
    return Prepared(data, found, parts, split_doc, split_path, train, val, cache)


def sampling_weights(clips: list[Clip]) -> tuple[np.ndarray, np.ndarray]:
    """(probability of drawing each clip, loss weight per label).

    Each corpus's share of an epoch grows with sqrt(size): big CREMA-D leads, small
    SAVEE is not drowned. Classes are then balanced within that mix (neutral is rarer
    in RAVDESS, calm exists only there), capped at 5x.
    """
    corpus_n: dict[str, int] = {}
    for c in clips:
        corpus_n[c.corpus] = corpus_n.get(c.corpus, 0) + 1
    weight = np.array([np.sqrt(corpus_n[c.corpus]) / corpus_n[c.corpus] for c in clips])
    weight /= weight.sum()
    index = {lab: i for i, lab in enumerate(LABELS)}
    y = np.array([index[c.label] for c in clips])
    counts = np.bincount(y, weights=weight * len(clips), minlength=len(LABELS))
    class_w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(LABELS), 0.0)
    return weight, np.minimum(class_w, 5.0)


def val_score(result: dict) -> float:
    """Mean of per-corpus accuracies: no corpus may dominate the choice of a model."""
    accs = [r["accuracy"] for r in result.get("corpora", {}).values()]
    return float(np.mean(accs)) if accs else 0.0

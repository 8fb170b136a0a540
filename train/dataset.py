"""Clips -> VAD-trimmed waveforms -> features, exactly the daemon's way, with a cache.

Decoding (serstream.decode), trimming (serstream.vad.trim, with the VAD settings the
model will carry) and MFCC (serstream.features) are the serving code itself; nothing
here computes a feature of its own. Three caches live under ``cache_dir``, each keyed by
a hash of the settings that produced it and by every file's path, size and mtime, so a
second ``fit`` skips straight to training:

- trimmed waveforms (float32, exactly what ``trim(load_audio(path).samples)`` returns:
  the slow part is decoding, resampling and the VAD, and on-the-fly augmentation needs
  the waveform, not the features);
- clean features of those waveforms (keyed by feature + VAD config), for the training
  mean/std and for validation;
- the slow augmentation variants (time stretch, pitch shift) of training clips, stored
  as int16 (they are distortions anyway; exactness does not matter there).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from serstream.decode import load_audio
from serstream.errors import AudioFileError
from serstream.features import FeatureConfig, FeatureExtractor
from serstream.limits import usable_cpus
from serstream.vad import VadConfig, trim
from train.augment import AugmentConfig, cached_variants
from train.corpora import Clip

log = logging.getLogger(__name__)


class Progress:
    """A line on stderr every few seconds: long work shows that it is moving."""

    def __init__(self, what: str, total: int, every: float = 5.0) -> None:
        self.what, self.total, self.every = what, total, every
        self.t0 = self.last = time.monotonic()
        self.done = 0

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else 0
            log.info("%s %d/%d (%.0f/s, %.0f s left)", self.what, self.done, self.total, rate, eta)


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


_digests: dict[tuple[str, int, int], str] = {}


def content_id(p: Path) -> str:
    """What the caches key a clip by: a digest of the file's bytes, not its path or time.

    Keyed by path, size and mtime, a fresh copy of the same corpora (new times, another
    folder) found nothing cached and re-ran decoding, augmentation and the encoder (tens of
    minutes) on identical audio. Reading and hashing all four corpora (240 MB) took 4 s here
    with the files in the page cache, 28 s from a cold disk; the digest is remembered per
    (path, size, mtime) for the rest of the run. Two files with the same bytes (RAVDESS has
    a pair) share their entries, which is right: their audio is the same.
    """
    st = p.stat()
    memo = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _digests:
        _digests[memo] = hashlib.blake2b(p.read_bytes(), digest_size=16).hexdigest()
    return _digests[memo]


def _trim_one(args: tuple[str, int, dict]) -> np.ndarray | str:
    path, sr, vad = args
    try:
        y = load_audio(path, sr).samples
    except AudioFileError as exc:
        return str(exc)
    return trim(y, sr, VadConfig(**vad)).astype(np.float32, copy=False)


def _variants_one(args: tuple[np.ndarray, int, dict, int]) -> list[np.ndarray]:
    y16, sr, aug, seed = args
    rng = np.random.default_rng(seed)
    return [_to_int16(v) for v in cached_variants(_to_float(y16), sr, AugmentConfig(**aug), rng)]


def _to_int16(y: np.ndarray) -> np.ndarray:
    return (np.clip(y, -1, 1) * 32767).astype(np.int16)


def _to_float(y: np.ndarray) -> np.ndarray:
    """int16 (augmentation variants) -> float32; float32 (trimmed clips) unchanged."""
    if y.dtype == np.int16:
        return y.astype(np.float32) / 32767
    return y.astype(np.float32, copy=False)


def _parallel(fn: Callable, jobs: list, what: str, workers: int) -> list:
    prog = Progress(what, len(jobs))
    out = []
    if workers <= 1 or len(jobs) < 50:
        for j in jobs:
            out.append(fn(j))
            prog.step()
        return out
    with ProcessPoolExecutor(workers) as pool:
        for r in pool.map(fn, jobs, chunksize=32):
            out.append(r)
            prog.step()
    return out


class AudioCache:
    """Trimmed waveforms (at the model's rate ``sr``: no default, so no caller can
    forget it) and augmentation variants, on disk."""

    def __init__(self, cache_dir: Path, vad: VadConfig, sr: int, workers: int | None = None) -> None:
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.vad = vad
        self.sr = sr
        self.workers = workers or usable_cpus()

    def trimming(self) -> dict:
        """What every waveform this cache hands out depends on besides its file."""
        return {"vad": asdict(self.vad), "sr": self.sr}

    def _load(self, name: str) -> dict:
        p = self.dir / name
        if p.exists():
            with p.open("rb") as f:
                return pickle.load(f)
        return {}

    def _save(self, name: str, data: dict) -> None:
        tmp = self.dir / (name + ".tmp")
        with tmp.open("wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(self.dir / name)

    def trimmed(self, clips: list[Clip]) -> tuple[list[Clip], list[np.ndarray]]:
        """(clips that decoded, their trimmed float32 audio); failures are logged and dropped."""
        name = f"trimmed32-{_key(asdict(self.vad), self.sr)}.pkl"
        store = self._load(name)
        ids = [content_id(c.path) for c in clips]
        todo = [(i, c) for i, (c, k) in enumerate(zip(clips, ids, strict=True)) if k not in store]
        if todo:
            log.info("extracting %d clips (decode, VAD trim) with %d workers", len(todo), self.workers)
            res = _parallel(_trim_one, [(str(c.path), self.sr, asdict(self.vad)) for _, c in todo],
                            "extract", self.workers)
            for (i, _), r in zip(todo, res, strict=True):
                store[ids[i]] = r
            self._save(name, store)
        else:
            log.info("extract: all %d clips from cache", len(clips))
        ok_clips, audio = [], []
        for c, k in zip(clips, ids, strict=True):
            r = store[k]
            if isinstance(r, str):
                log.warning("skipped: %s", r)
                continue
            ok_clips.append(c)
            audio.append(r)
        return ok_clips, audio

    def variants(self, clips: list[Clip], audio: list[np.ndarray], aug: AugmentConfig,
                 seed: int) -> list[list[np.ndarray]]:
        name = f"variants-{_key(asdict(self.vad), self.sr, asdict(aug), seed)}.pkl"
        store = self._load(name)
        ids = [content_id(c.path) for c in clips]
        todo = [i for i, k in enumerate(ids) if k not in store]
        if todo:
            log.info("augmenting %d training clips (time stretch, pitch shift)", len(todo))
            res = _parallel(_variants_one, [(audio[i], self.sr, asdict(aug), seed + i) for i in todo],
                            "augment", self.workers)
            for i, r in zip(todo, res, strict=True):
                store[ids[i]] = r
            self._save(name, store)
        return [store[k] for k in ids]

    def features(self, clips: list[Clip], audio: list[np.ndarray],
                 config: FeatureConfig) -> list[np.ndarray]:
        """Clean features of trimmed clips through the serving extractor, cached on disk."""
        if config.sr != self.sr:
            raise ValueError(f"features at {config.sr} Hz asked of audio cached at {self.sr} Hz")
        name = f"features-{_key(asdict(config), asdict(self.vad), self.sr)}.pkl"
        store = self._load(name)
        ids = [content_id(c.path) for c in clips]
        todo = [i for i, k in enumerate(ids) if k not in store]
        if todo:
            fx = FeatureExtractor(config)
            prog = Progress("features", len(todo))
            for i in todo:
                store[ids[i]] = fx(_to_float(audio[i]))
                prog.step()
            self._save(name, store)
        else:
            log.info("features: all %d clips from cache", len(clips))
        return [store[k] for k in ids]

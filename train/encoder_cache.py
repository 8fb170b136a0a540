"""Pooled encoder statistics of every training clip and augmented version, on disk.

With two cores, the Whisper encoder is too slow to run inside a training loop; frozen,
it only needs to run once per (clip, version). This cache holds, for each of them, the
mean and standard deviation over time of every hidden state (``[layers, 2 * d]``,
float16): a head trains on those in minutes, and any choice of layers can be tried
without touching the encoder again.

The statistics are computed by ONNX Runtime from an exported copy of the same encoder
and pooling that the served model contains, on features from ``serstream.features``
(the serving extractor), in worker processes of one thread each.
"""

from __future__ import annotations

import logging
import os
import pickle
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from serstream.features import FeatureConfig, FeatureExtractor
from serstream.limits import usable_cpus
from train.augment import AugmentConfig, on_the_fly
from train.dataset import Progress, _key, _to_float
from train.head import LayerStats
from train.whisper import WEIGHTS, WhisperEncoder, load_weights

log = logging.getLogger(__name__)

SHARD = 2000  # items per file: an interrupted extraction keeps what it finished


@dataclass(frozen=True)
class Job:
    """One encoder input: a waveform, and whether (and with which seed) the cheap
    augmentations (gain, white noise, polarity) are applied to it first."""

    key: str
    audio: np.ndarray
    fly_seed: int | None = None


def export_stats_graph(path: Path, n_layers: int = 6) -> Path:
    """ONNX of encoder + pooling for every hidden state, for the extraction workers."""
    if path.exists():
        return path
    model = LayerStats(WhisperEncoder.from_ct2(load_weights(), n_layers)).eval()
    tmp = path.with_suffix(".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 300, 80),), str(tmp), input_names=["features"],
                          output_names=["stats"], dynamic_axes={"features": {1: "time"}},
                          opset_version=17, dynamo=False)
    tmp.replace(path)
    return path


_worker: dict = {}


def _init_worker(graph: str, features: dict, mean: float, std: float, augment: dict) -> None:
    import onnxruntime as ort

    os.environ["OMP_NUM_THREADS"] = "1"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    _worker["session"] = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    _worker["fx"] = FeatureExtractor(FeatureConfig(**features))
    _worker["norm"] = (mean, std)
    _worker["augment"] = AugmentConfig(**augment)


def _encode(job: Job) -> tuple[str, np.ndarray]:
    y = _to_float(job.audio)
    if job.fly_seed is not None:
        y = on_the_fly(y, _worker["augment"], np.random.default_rng(job.fly_seed))
    mean, std = _worker["norm"]
    x = ((_worker["fx"](y) - mean) / std).astype(np.float32)[None]
    stats = _worker["session"].run(None, {"features": x})[0][0]
    return job.key, stats.astype(np.float16)


class EncoderCache:
    """``key -> [layers, 2 * d]`` float16 statistics, in shards under ``cache_dir``."""

    def __init__(self, cache_dir: Path, features: FeatureConfig, mean: float, std: float,
                 augment: AugmentConfig, *, trimming: dict, n_layers: int = 6, workers: int | None = None) -> None:
        """``trimming`` says how the waveforms handed to :meth:`compute` were cut (the VAD
        settings and rate): a key names a file, not its audio, so statistics of clips
        trimmed otherwise must never be found under it."""
        self.features, self.mean, self.std, self.augment = features, mean, std, augment
        self.n_layers = n_layers
        self.workers = workers or usable_cpus()
        tag = _key(WEIGHTS.sha256, n_layers, asdict(features), mean, std, asdict(augment), trimming)
        self.dir = Path(cache_dir) / f"encoder-stats-{tag}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.graph = export_stats_graph(self.dir / "stats.onnx", n_layers)
        self.store: dict[str, np.ndarray] = {}
        for shard in sorted(self.dir.glob("shard-*.pkl")):
            with shard.open("rb") as f:
                self.store.update(pickle.load(f))

    def _save(self, items: dict[str, np.ndarray]) -> None:
        n = len(list(self.dir.glob("shard-*.pkl")))
        tmp = self.dir / f"shard-{n:05d}.tmp"
        with tmp.open("wb") as f:
            pickle.dump(items, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(self.dir / f"shard-{n:05d}.pkl")

    def compute(self, jobs: Sequence[Job] | Iterator[Job], total: int, what: str = "encode") -> None:
        """Run the encoder on every job whose key is not cached yet."""
        todo = [j for j in jobs if j.key not in self.store]
        if not todo:
            log.info("%s: all %d from cache", what, total)
            return
        log.info("%s: %d of %d to compute with %d workers", what, len(todo), total, self.workers)
        prog = Progress(what, len(todo), every=20.0)
        pending: dict[str, np.ndarray] = {}
        init = (str(self.graph), asdict(self.features), self.mean, self.std, asdict(self.augment))
        with ProcessPoolExecutor(self.workers, initializer=_init_worker, initargs=init) as pool:
            for key, stats in pool.map(_encode, todo, chunksize=8):
                self.store[key] = stats
                pending[key] = stats
                prog.step()
                if len(pending) >= SHARD:
                    self._save(pending)
                    pending = {}
        if pending:
            self._save(pending)

    def get(self, keys: Sequence[str]) -> np.ndarray:
        return np.stack([self.store[k] for k in keys])

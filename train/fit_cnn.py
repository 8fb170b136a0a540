"""The light model kind: a compact CNN over MFCC (+ deltas), trained end to end.

Per-epoch augmentation on the waveform (gain, white noise, polarity on top of cached
time-stretch / pitch-shift variants), features through the serving extractor, SpecAugment
time masks, an exponential moving average of the weights, the epoch chosen on
validation speakers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from serstream.features import FeatureConfig, FeatureExtractor
from train.augment import AugmentConfig, on_the_fly
from train.corpora import LABELS
from train.dataset import _to_float
from train.evaluate import score
from train.net import EmotionCNN
from train.optim import optimisation
from train.prepare import Prepared, sampling_weights, val_score

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CnnConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    epochs: int = 30
    patience: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.05
    width: int = 160
    dropout: float = 0.3
    seed: int = 7
    threads: int = 2
    # Per-clip mean normalisation inside the network. Off: a run with it on validated
    # ~5 points lower on CREMA-D than one without; the absolute level and tilt of the
    # spectrum (c0, c1) carry arousal, which CMN throws away with the speaker offset.
    clip_norm: bool = False
    ema_decay: float = 0.996  # validate/export an exponential moving average of the weights
    time_masks: int = 2  # SpecAugment-style masks on training inputs
    time_mask_frames: int = 12
    feature_masks: int = 0  # bands of cepstral coefficients are not spectral bands: off
    feature_mask_width: int = 8


@dataclass
class CnnResult:
    net: EmotionCNN
    mean: np.ndarray
    std: np.ndarray
    best_epoch: int
    history: list[dict]
    train_wall_s: float


def _batches(lengths: np.ndarray, order: np.ndarray, batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Clips of similar length together (little padding), batches in random order."""
    chunk = batch * 20
    out = []
    for i in range(0, len(order), chunk):
        part = order[i : i + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out += [part[j : j + batch] for j in range(0, len(part), batch)]
    rng.shuffle(out)
    return out


def _pad(feats: list[np.ndarray], mean: np.ndarray, std: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    t = max(f.shape[0] for f in feats)
    x = np.zeros((len(feats), t, feats[0].shape[1]), np.float32)
    m = np.zeros((len(feats), t), np.float32)
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = (f - mean) / std
        m[i, : f.shape[0]] = 1
    return torch.from_numpy(x), torch.from_numpy(m)


def _mask_inputs(x: torch.Tensor, m: torch.Tensor, config: CnnConfig, rng: np.random.Generator) -> None:
    """SpecAugment on the standardised features: blank a few time spans and a few
    coefficient bands (set to the training mean, i.e. 0), in place."""
    lengths = m.sum(dim=1).long().tolist()
    n_feat = x.shape[2]
    for i, length in enumerate(lengths):
        for _ in range(config.time_masks):
            w = int(rng.integers(0, config.time_mask_frames + 1))
            if 0 < w < length:
                s = int(rng.integers(0, length - w))
                x[i, s : s + w] = 0.0
        for _ in range(config.feature_masks):
            w = int(rng.integers(0, config.feature_mask_width + 1))
            if w:
                s = int(rng.integers(0, n_feat - w))
                x[i, :, s : s + w] = 0.0


def _probs(net: EmotionCNN, feats: list[np.ndarray], mean, std, batch: int = 64) -> np.ndarray:
    net.eval()
    order = np.argsort([f.shape[0] for f in feats])
    out = np.zeros((len(feats), len(LABELS)), np.float32)
    with torch.no_grad():
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            x, m = _pad([feats[j] for j in idx], mean, std)
            out[idx] = torch.softmax(net(x, m), dim=1).numpy()
    return out


def train_cnn(prep: Prepared, config: CnnConfig) -> CnnResult:
    t_start = time.monotonic()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    train, val = prep.train, prep.val
    variants = prep.cache.variants(train.clips, train.audio, config.augment, config.seed)

    fx = FeatureExtractor(config.features)
    clean = prep.cache.features(train.clips, train.audio, config.features)
    frames = np.concatenate(clean)
    mean = frames.mean(axis=0).astype(np.float32)
    std = np.maximum(frames.std(axis=0), 1e-3).astype(np.float32)
    del frames, clean
    val_feats = prep.cache.features(val.clips, val.audio, config.features)

    y_train = train.labels()
    weight, class_w = sampling_weights(train.clips)
    net = EmotionCNN(config.features.n_features, len(LABELS), config.width, config.dropout, config.clip_norm)
    log.info("network: %d parameters; %d train / %d val clips", sum(p.numel() for p in net.parameters()),
             len(train.clips), len(val.clips))
    optim = optimisation(net, len(train.clips), class_w, lr=config.lr, weight_decay=config.weight_decay,
                         batch_size=config.batch_size, epochs=config.epochs,
                         label_smoothing=config.label_smoothing, ema_decay=config.ema_decay, warmup=0.15)
    best: tuple[float, int, dict | None] = (-1.0, 0, None)
    history = []
    for epoch in range(1, config.epochs + 1):
        t0 = time.monotonic()
        order = rng.choice(len(train.clips), size=len(train.clips), replace=True, p=weight)
        feats = []
        for i in order:
            versions = [train.audio[i], *variants[i]]
            y = _to_float(versions[rng.integers(len(versions))])
            feats.append(fx(on_the_fly(y, config.augment, rng)))
        lengths = np.array([f.shape[0] for f in feats])
        t_feat = time.monotonic() - t0
        net.train()
        total, n = 0.0, 0
        for b in _batches(lengths, np.arange(len(order)), config.batch_size, rng):
            x, m = _pad([feats[j] for j in b], mean, std)
            _mask_inputs(x, m, config, rng)
            total += optim.step(net(x, m), torch.from_numpy(y_train[order[b]])) * len(b)
            n += len(b)
        final = optim.averaged
        scored = score(_probs(final, val_feats, mean, std), val.clips, LABELS) if val.clips else {"corpora": {}}
        vs = val_score(scored)
        history.append({"epoch": epoch, "loss": round(total / n, 4), "val": round(vs, 4),
                        "val_corpora": {k: v["accuracy"] for k, v in scored["corpora"].items()}})
        log.info("epoch %2d/%d  loss %.4f  val %.3f %s  (%.0f s, features %.0f s)", epoch, config.epochs,
                 total / n, vs, {k: v["accuracy"] for k, v in scored["corpora"].items()},
                 time.monotonic() - t0, t_feat)
        if vs > best[0]:
            best = (vs, epoch, {k: v.detach().clone() for k, v in final.state_dict().items()})
        elif epoch - best[1] >= config.patience:
            log.info("no validation gain for %d epochs: stopping", config.patience)
            break
    net = optim.averaged
    if best[2] is not None:
        net.load_state_dict(best[2])
    log.info("best epoch %d (val %.3f)", best[1], best[0])
    return CnnResult(net.eval(), mean, std, best[1], history, time.monotonic() - t_start)

"""Train, select on validation speakers, export, score the test speakers, write the card."""

from __future__ import annotations

import datetime as dt
import json
import logging
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim import swa_utils

from serstream.features import FeatureConfig, FeatureExtractor
from serstream.model import ModelMetadata
from serstream.vad import VadConfig
from train import split as splitting
from train.augment import AugmentConfig, on_the_fly
from train.corpora import CORPUS_LABELS, LABELS, Clip, require_clips, scan
from train.dataset import AudioCache, _to_float
from train.evaluate import evaluate_model, plot_confusion, score
from train.export import export, max_difference, write_metadata
from train.net import EmotionCNN

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
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
    # Per-clip mean normalisation inside the network. Off: a run with it on (and with
    # feature masks, runs/fit2) validated ~5 points lower on CREMA-D than one without;
    # the absolute level and tilt of the spectrum (c0, c1) carry arousal, which CMN
    # throws away together with the speaker offset.
    clip_norm: bool = False
    ema_decay: float = 0.996  # validate/export an exponential moving average of the weights
    time_masks: int = 2  # SpecAugment-style masks on training inputs
    time_mask_frames: int = 12
    feature_masks: int = 0  # bands of cepstral coefficients are not spectral bands: off
    feature_mask_width: int = 8
    limit: int | None = None  # clips per corpus (quick runs, tests)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    split: splitting.SplitConfig = field(default_factory=splitting.SplitConfig)
    name: str = "serstream-emotion"


def _limit(clips: list[Clip], n: int | None, seed: int) -> list[Clip]:
    if n is None:
        return clips
    rng = np.random.default_rng(seed)
    out = []
    for corpus in sorted({c.corpus for c in clips}):
        sub = [c for c in clips if c.corpus == corpus]
        idx = rng.permutation(len(sub))[:n]
        out += [sub[i] for i in sorted(idx)]
    return out


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


def _mask_inputs(x: torch.Tensor, m: torch.Tensor, config: FitConfig, rng: np.random.Generator) -> None:
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


def _val_score(result: dict) -> float:
    """Mean of per-corpus accuracies: no corpus may dominate the choice of epoch."""
    accs = [r["accuracy"] for r in result["corpora"].values()]
    return float(np.mean(accs)) if accs else 0.0


def fit(data: Path, out_dir: Path, cache_dir: Path, config: FitConfig = FitConfig()) -> dict:
    t_start = time.monotonic()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = config.name

    found = scan(data)
    clips = _limit(require_clips(found, data), config.limit, config.seed)
    parts = splitting.split(clips, config.split)
    split_doc = splitting.describe(parts, config.split, root=data)
    splitting.write(out_dir / f"{name}.split.json", split_doc)
    for p in splitting.PARTS:
        log.info("split %-5s %5d clips  %s", p, len(parts[p]),
                 {k: len(v) for k, v in split_doc["parts"][p]["groups"].items()})

    cache = AudioCache(cache_dir, config.vad)
    train_clips, train_audio = cache.trimmed(parts["train"])
    val_clips, val_audio = cache.trimmed(parts["val"])
    variants = cache.variants(train_clips, train_audio, config.augment, config.seed)

    fx = FeatureExtractor(config.features)
    clean = cache.features(train_clips, train_audio, config.features)
    frames = np.concatenate(clean)
    mean = frames.mean(axis=0).astype(np.float32)
    std = np.maximum(frames.std(axis=0), 1e-3).astype(np.float32)
    del frames, clean
    val_feats = cache.features(val_clips, val_audio, config.features)

    index = {lab: i for i, lab in enumerate(LABELS)}
    y_train = np.array([index[c.label] for c in train_clips])
    corpus_n = {k: sum(c.corpus == k for c in train_clips) for k in CORPUS_LABELS}
    # each corpus's share of an epoch grows with sqrt(size): big CREMA-D leads, small
    # SAVEE is not drowned
    weight = np.array([np.sqrt(corpus_n[c.corpus]) / corpus_n[c.corpus] for c in train_clips])
    weight /= weight.sum()
    # class balance within the union (neutral is rarer in RAVDESS, calm only there)
    counts = np.bincount(y_train, weights=weight * len(train_clips), minlength=len(LABELS))
    class_w = torch.tensor(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / len(LABELS), 0),
                           dtype=torch.float32).clamp(max=5.0)

    net = EmotionCNN(config.features.n_features, len(LABELS), config.width, config.dropout, config.clip_norm)
    n_params = sum(p.numel() for p in net.parameters())
    log.info("network: %d parameters; %d train / %d val clips", n_params, len(train_clips), len(val_clips))
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = int(np.ceil(len(train_clips) / config.batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch,
                                                pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss(weight=class_w, label_smoothing=config.label_smoothing)
    # The weight average (batch-norm statistics included) is what gets validated and
    # exported: single-epoch weights swing by several points of validation accuracy from
    # one epoch to the next on held-out speakers; the average is steadier and better.
    ema = swa_utils.AveragedModel(net, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(config.ema_decay),
                                  use_buffers=True)

    best = (-1.0, 0, None)
    history = []
    for epoch in range(1, config.epochs + 1):
        t0 = time.monotonic()
        order = rng.choice(len(train_clips), size=len(train_clips), replace=True, p=weight)
        feats = []
        for i in order:
            versions = [train_audio[i], *variants[i]]
            y = _to_float(versions[rng.integers(len(versions))])
            feats.append(fx(on_the_fly(y, config.augment, rng)))
        lengths = np.array([f.shape[0] for f in feats])
        t_feat = time.monotonic() - t0
        net.train()
        total, n = 0.0, 0
        for b in _batches(lengths, np.arange(len(order)), config.batch_size, rng):
            x, m = _pad([feats[j] for j in b], mean, std)
            _mask_inputs(x, m, config, rng)
            target = torch.from_numpy(y_train[order[b]])
            loss = loss_fn(net(x, m), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update_parameters(net)
            if sched.last_epoch + 1 < sched.total_steps:
                sched.step()
            total += loss.item() * len(b)
            n += len(b)
        final = ema.module
        val = score(_probs(final, val_feats, mean, std), val_clips, LABELS) if val_clips else {"corpora": {}}
        vs = _val_score(val)
        history.append({"epoch": epoch, "loss": round(total / n, 4), "val": round(vs, 4),
                        "val_corpora": {k: v["accuracy"] for k, v in val["corpora"].items()}})
        log.info("epoch %2d/%d  loss %.4f  val %.3f %s  (%.0f s, features %.0f s)", epoch, config.epochs,
                 total / n, vs, {k: v["accuracy"] for k, v in val["corpora"].items()},
                 time.monotonic() - t0, t_feat)
        if vs > best[0]:
            best = (vs, epoch, {k: v.detach().clone() for k, v in final.state_dict().items()})
        elif epoch - best[1] >= config.patience:
            log.info("no validation gain for %d epochs: stopping", config.patience)
            break
    net = ema.module
    net.load_state_dict(best[2])
    log.info("best epoch %d (val %.3f)", best[1], best[0])

    onnx_path = out_dir / f"{name}.onnx"
    meta = ModelMetadata(
        labels=LABELS, features=config.features, mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std), sample_rate=config.features.sr, vad=config.vad,
        model_id=f"{name}-{dt.datetime.now(dt.timezone.utc):%Y%m%d}-e{best[1]}",
        provenance={
            "trained_on": "RAVDESS, CREMA-D, TESS, SAVEE (speaker-independent split; see model card)",
            "created": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "command": " ".join(["python -m train", *sys.argv[1:]]),
            "split": f"{name}.split.json",
        },
    )
    export(net, meta, onnx_path)
    diff = max_difference(net, onnx_path)
    log.info("exported %s (%.2f MB); max |onnx - torch| = %.2e", onnx_path, onnx_path.stat().st_size / 1e6, diff)

    # the test numbers come from the exported file, through the daemon's own code
    test_split = out_dir / f"{name}.split.json"
    test, _ = evaluate_model(onnx_path, data, cache_dir, test_split, "test")
    val_final = score(_probs(net, val_feats, mean, std), val_clips, LABELS) if val_clips else {}
    plot_confusion(test, out_dir / f"{name}.confusion.png", f"{name}: test speakers (words for TESS)")
    wall = time.monotonic() - t_start
    meta = replace(meta, provenance={**meta.provenance, **provenance_metrics(test, val_final, wall, name)})
    write_metadata(onnx_path, meta)
    card = {
        "name": name,
        "model_id": meta.model_id,
        "file": onnx_path.name,
        "size_bytes": onnx_path.stat().st_size,
        "parameters": n_params,
        "labels": list(LABELS),
        "data": {
            "root": str(data),
            "scanned": found.counts(),
            "unrecognised_files": len(found.unknown),
            "parts": {p: {"clips": split_doc["parts"][p]["clips"],
                          "clips_per_corpus": split_doc["parts"][p]["clips_per_corpus"],
                          "groups": split_doc["parts"][p]["groups"]}
                      for p in splitting.PARTS},
        },
        "split": asdict(config.split),
        "features": asdict(config.features),
        "vad": asdict(config.vad),
        "augmentation": asdict(config.augment),
        "training": {k: v for k, v in asdict(config).items() if k not in ("features", "vad", "augment", "split")},
        "best_epoch": best[1],
        "history": history,
        "validation": {k: {"accuracy": v["accuracy"], "macro_f1": v["macro_f1"]}
                       for k, v in val_final.get("corpora", {}).items()},
        "test": test,
        "onnx_vs_torch_max_abs_diff": diff,
        "wall_time_s": round(wall, 1),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "command": meta.provenance["command"],
    }
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=1))
    (out_dir / f"{name}.md").write_text(model_card_markdown(card))
    log.info("fit done in %.0f s: test %s", wall,
             {k: (v["accuracy"], v["macro_f1"]) for k, v in test["corpora"].items()})
    return card


def provenance_metrics(test: dict, val: dict, wall_s: float, name: str) -> dict:
    """The model card's summary, small enough for the ONNX metadata."""
    return {
        "test_metrics": {c: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "clips": r["clips"]}
                         for c, r in test.get("corpora", {}).items()},
        "val_accuracy": {c: r["accuracy"] for c, r in val.get("corpora", {}).items()},
        "training_wall_time_s": round(wall_s, 1),
        "model_card": f"{name}.md / {name}.json (accuracy within each corpus's own labels)",
    }


def model_card_markdown(card: dict) -> str:
    t = card["test"]
    rows = "\n".join(
        f"| {c} | {r['classes']} | {r['clips']} | {r['accuracy']:.1%} | {r['macro_f1']:.3f} | "
        + (f"{card['validation'][c]['accuracy']:.1%} |" if c in card["validation"] else "— (no val speaker) |")
        for c, r in t["corpora"].items()
    )
    parts = card["data"]["parts"]
    groups = "\n".join(
        f"- **{p}** ({parts[p]['clips']} clips): "
        + "; ".join(f"{k}: {', '.join(g.split(':', 1)[1] for g in v) if k != 'tess' else f'{len(v)} words'}"
                    for k, v in parts[p]["groups"].items())
        for p in ("val", "test")
    )
    corpora = sorted({k for p in parts.values() for k in p.get("clips_per_corpus", {})})
    counts = "\n".join(f"| {p} | " + " | ".join(str(parts[p].get("clips_per_corpus", {}).get(k, 0))
                                                 for k in corpora) + " |" for p in ("train", "val", "test"))
    return f"""# Model card: {card['name']}

`{card['file']}` — model id `{card['model_id']}`, {card['size_bytes'] / 1e6:.2f} MB,
{card['parameters']:,} parameters. Labels: {', '.join(card['labels'])}.

## Results (test speakers never seen in training; TESS: test *words*)
Accuracy is computed within each corpus's own label set (argmax over that corpus's labels).

| corpus | classes | test clips | accuracy | macro-F1 | val accuracy |
|---|---|---|---|---|---|
{rows}
| all | 8 | {t['all']['clips']} | {t['all']['accuracy']:.1%} | {t['all']['macro_f1']:.3f} | |

Confusion matrices: `{card['name']}.confusion.png`. Targets set for this model were RAVDESS ≥ 76%,
CREMA-D ≥ 70%, SAVEE ≥ 75%, TESS ≥ 99.5%; see "Limits" for where it stands and why.

## Data and split
RAVDESS, CREMA-D, TESS and SAVEE as found in `{card['data']['root']}` (16 kHz mono; part of each
corpus is held back by the data owner as an unseen test set, so counts here are not the full
corpora). Speaker-independent split, written to `{card['name']}.split.json` with every file:
{groups}
- **train**: everything else ({parts['train']['clips']} clips).

| part | {' | '.join(corpora)} |
|---|{'---|' * len(corpora)}
{counts}

TESS has two speakers, both needed in training, so it is split by *word*: a test word is never
heard in training, in any emotion, by either speaker. TESS numbers therefore measure new words,
not new voices. SAVEE (four speakers in the full corpus, fewer here): one test speaker and no
validation speaker, so as to keep at least two voices for training.

## Features (identical to serving)
`serstream.features` MFCC: {card['features']['n_mfcc']} coefficients, n_fft {card['features']['n_fft']},
win {card['features']['win_length']}, hop {card['features']['hop_length']}, {card['features']['n_mels']} mels,
+ delta and delta-delta = {card['features']['n_mfcc'] * (1 + card['features']['delta_order'])} per frame,
standardised with training-set means/stds (stored in the ONNX metadata). Every clip is first cut by
the daemon's WebRTC VAD (`serstream.vad.trim`, settings stored in the model).

## Training
Compact CNN (3 dilated 1-D convolutions, mean+std pooling, 2-layer head){' with per-clip mean normalisation in the graph' if card['training'].get('clip_norm') else ''},
AdamW + one-cycle, label smoothing, exponential moving average of the weights (decay
{card['training'].get('ema_decay')}; the average is what is validated and exported), class-balanced loss, corpora sampled in proportion to sqrt(size),
SpecAugment-style masks ({card['training'].get('time_masks', 0)} time × ≤{card['training'].get('time_mask_frames', 0)} frames,
{card['training'].get('feature_masks', 0)} bands × ≤{card['training'].get('feature_mask_width', 0)} coefficients). Augmentation on
training clips only, after the split: white noise (SNR {card['augmentation']['noise_snr_db']} dB,
p={card['augmentation']['noise_p']}), random gain ({card['augmentation']['gain_db']} dB, p={card['augmentation']['gain_p']}),
polarity inversion (p={card['augmentation']['polarity_p']}), and cached time-stretch
({card['augmentation']['stretch_rate']}, p={card['augmentation']['stretch_p']}) and pitch-shift
({card['augmentation']['pitch_semitones']} semitones, p={card['augmentation']['pitch_p']}) variants.
Best epoch {card['best_epoch']} of {len(card['history'])}, chosen on validation speakers only.
ONNX vs PyTorch max abs difference: {card['onnx_vs_torch_max_abs_diff']:.1e}.
Wall time of the whole fit: **{card['wall_time_s'] / 60:.1f} min** on {card['machine']}.

Command: `{card['command']}`

## Limits
- The targets are beyond what these corpora support from MFCCs with held-out speakers: human
  listeners given the audio alone agree with CREMA-D's intended emotion only about 40% of the
  time (Cao et al. 2014), and RAVDESS audio-only speech was recognised by raters about 60%
  of the time (Livingstone & Russo 2018). Self-supervised speech models reach ~70-76% on
  RAVDESS; a 1.4 MB MFCC CNN does not. TESS is near ceiling because test *words* are new but
  both voices are known.
- Validation has few speakers (2 RAVDESS actors, 8 CREMA-D): the epoch choice is noisy, and
  test speakers differ from them by several points in either direction.
- Acted, read speech in studio conditions by a few dozen actors; expect lower accuracy on
  spontaneous speech, other accents, far-field microphones and noise.
- MFCC statistics carry speaker and channel identity as much as emotion; with a few hundred
  speakers in all, a model of this size generalises to new voices only so far.
- Calm exists only in RAVDESS, surprise not in CREMA-D: their scores rest on few speakers.

## Licences
RAVDESS CC BY-NC-SA 4.0 (Livingstone & Russo 2018); CREMA-D ODbL (Cao et al. 2014); TESS
CC BY-NC-ND 4.0 (Dupuis & Pichora-Fuller, University of Toronto); SAVEE free for research use
(Haq & Jackson, University of Surrey). The model is derived from them: non-commercial research use.
"""

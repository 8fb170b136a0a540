"""Scores per corpus, within each corpus's own label set, from the *served* model.

Evaluation runs the exported ONNX file through serstream.model.EmotionModel (its own
feature extractor, its own VAD settings), so the numbers are the daemon's numbers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from serstream.model import EmotionModel
from serstream.vad import VadConfig
from train.corpora import CORPUS_LABELS, Clip, require_clips, scan
from train.dataset import AudioCache, Progress, _to_float
from train.voices import neutral_references

log = logging.getLogger(__name__)


def restricted_argmax(probs: np.ndarray, labels: tuple[str, ...], allowed: tuple[str, ...]) -> np.ndarray:
    """Best label among ``allowed`` (a corpus's own set) for each row of ``probs``."""
    keep = np.array([lab in allowed for lab in labels])
    masked = np.where(keep[None, :], probs, -np.inf)
    return masked.argmax(axis=1)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def macro_f1(cm: np.ndarray, classes: list[int]) -> float:
    f1s = []
    for c in classes:
        tp = cm[c, c]
        fp = cm[:, c].sum() - tp
        fn = cm[c, :].sum() - tp
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def score(probs: np.ndarray, clips: list[Clip], labels: tuple[str, ...]) -> dict:
    """Accuracy and macro-F1 per corpus (own label set), plus confusion matrices."""
    index = {lab: i for i, lab in enumerate(labels)}
    out: dict = {"labels": list(labels), "corpora": {}}
    y_all, p_all = [], []
    for corpus in sorted({c.corpus for c in clips}):
        rows = [i for i, c in enumerate(clips) if c.corpus == corpus]
        allowed = CORPUS_LABELS[corpus]
        y = np.array([index[clips[i].label] for i in rows])
        p = restricted_argmax(probs[rows], labels, allowed)
        cm = confusion(y, p, len(labels))
        out["corpora"][corpus] = {
            "clips": len(rows),
            "classes": len(allowed),
            "accuracy": round(float((y == p).mean()), 4),
            "macro_f1": round(macro_f1(cm, [index[a] for a in allowed]), 4),
            "confusion": cm.tolist(),
            # per speaker (TESS: per word), because a corpus's score rests on a handful of
            # them: the spread says how much of a gap to a target is which voices were drawn
            "groups": _per_group([clips[i].group for i in rows], y == p),
        }
        y_all.append(y)
        p_all.append(p)
    if y_all:
        y, p = np.concatenate(y_all), np.concatenate(p_all)
        cm = confusion(y, p, len(labels))
        out["all"] = {"clips": int(y.size), "accuracy": round(float((y == p).mean()), 4),
                      "macro_f1": round(macro_f1(cm, list(range(len(labels)))), 4), "confusion": cm.tolist()}
    return out


def _per_group(groups: list[str], correct: np.ndarray) -> dict[str, dict]:
    out = {}
    for g in sorted(set(groups)):
        hit = correct[[i for i, x in enumerate(groups) if x == g]]
        out[g] = {"clips": int(hit.size), "accuracy": round(float(hit.mean()), 4)}
    return out


def predict(model: EmotionModel, audio: list[np.ndarray]) -> tuple[np.ndarray, dict, np.ndarray | None]:
    """Probabilities for each clip through the daemon's own path
    (:meth:`EmotionModel.classify`), what it cost per clip (median milliseconds), and
    the pooled statistics of each clip where the model gives them."""
    prog = Progress("score", len(audio))
    rows, feat_ms, infer_ms, stats = [], [], [], []
    for a in audio:
        result = model.classify(_to_float(a))
        rows.append(result.probabilities)
        feat_ms.append(result.features_ms)
        infer_ms.append(result.inference_ms)
        stats.append(result.statistics)
        prog.step()
    cost = {"features_ms_median": round(float(np.median(feat_ms)), 3) if feat_ms else None,
            "inference_ms_median": round(float(np.median(infer_ms)), 3) if infer_ms else None}
    return np.array(rows), cost, (np.stack(stats) if stats and stats[0] is not None else None)


def evaluate_model(model_path: Path, data: Path, cache_dir: Path, split_file: Path | None = None,
                   part: str = "test") -> tuple[dict, list[Clip]]:
    model = EmotionModel(model_path)
    clips = require_clips(scan(data), data)
    if split_file is not None:
        files = set(json.loads(split_file.read_text())["parts"][part]["files"])
        clips = [c for c in clips if str(c.path.relative_to(data)) in files]
        log.info("scoring the %s part of %s: %d clips", part, split_file, len(clips))
        if not clips:
            raise ValueError(f"none of the {part} files of {split_file} are under {data}")
    unknown = sorted({c.label for c in clips} - set(model.labels))
    if unknown:
        raise ValueError(f"model has no label for {unknown}")
    vad = model.meta.vad or VadConfig()
    clips, audio = AudioCache(cache_dir, vad, model.sample_rate).trimmed(clips)  # decoded and cut at the model's rate
    probs, cost, stats = predict(model, audio)
    result = score(probs, clips, model.labels)
    result["cost"] = cost
    if model.adapts:
        result["voice"] = score_enrolled(model, audio, clips, stats)
    return result, clips


def score_enrolled(model: EmotionModel, audio: list[np.ndarray], clips: list[Clip], stats: np.ndarray) -> dict:
    """The voice head's scores: each clip through the daemon's path again, the model
    enrolled on its speaker's neutral clips other than itself, the statistics of which
    come from the first pass through the same graph."""
    refs = neutral_references(stats, clips)
    rows = []
    prog = Progress("score enrolled", len(audio))
    try:
        for a, ref in zip(audio, refs, strict=True):
            model.use_voice(ref)
            rows.append(model.classify(_to_float(a)).probabilities)
            prog.step()
    finally:
        model.use_voice(None)
    out = score(np.array(rows), clips, model.labels)
    out["enrolment"] = "each speaker's neutral clips, other than the clip scored"
    return out


def plot_confusion(result: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(result["corpora"])
    labels = result["labels"]
    fig, axes = plt.subplots(1, len(corpora) + 1, figsize=(4.2 * (len(corpora) + 1), 4.4))
    panels = [(c, result["corpora"][c]) for c in corpora] + [("all", result["all"])]
    for ax, (name, r) in zip(np.atleast_1d(axes), panels, strict=True):
        cm = np.array(r["confusion"], dtype=float)
        used = [i for i in range(len(labels)) if cm[i].sum() > 0 or cm[:, i].sum() > 0]
        cm = cm[np.ix_(used, used)]
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(used)), [labels[i][:4] for i in used], rotation=90, fontsize=7)
        ax.set_yticks(range(len(used)), [labels[i][:4] for i in used], fontsize=7)
        for i in range(len(used)):
            for j in range(len(used)):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
        ax.set_title(f"{name}: acc {r['accuracy']:.2f}, F1 {r['macro_f1']:.2f}", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

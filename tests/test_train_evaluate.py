"""Scoring: each corpus within its own label set, and per speaker (TESS: per word)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train.corpora import Clip
from train.evaluate import score

LABELS = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")


def _clip(corpus: str, group: str, label: str) -> Clip:
    return Clip(Path(f"{corpus}/{group}/{label}.flac"), label, corpus, f"{corpus}:{group}", group)


def _onehot(label: str) -> np.ndarray:
    p = np.full(len(LABELS), 0.01)
    p[LABELS.index(label)] = 1.0
    return p / p.sum()


def test_accuracy_per_speaker_and_within_the_corpus_label_set():
    clips = [_clip("ravdess", "04", "sad"), _clip("ravdess", "04", "calm"),
             _clip("ravdess", "13", "angry"), _clip("ravdess", "13", "happy"), _clip("ravdess", "13", "fear"),
             _clip("cremad", "1025", "sad")]
    said = ["sad", "neutral", "angry", "happy", "happy", "calm"]
    probs = np.stack([_onehot(x) for x in said])
    # CREMA-D has no calm: its clip is scored by its own labels, where sad comes next
    probs[5, LABELS.index("sad")] = 0.5
    out = score(probs, clips, LABELS)["corpora"]
    assert out["ravdess"]["accuracy"] == 0.6
    assert out["ravdess"]["groups"] == {"04": {"clips": 2, "accuracy": 0.5},
                                        "13": {"clips": 3, "accuracy": round(2 / 3, 4)}}
    assert out["cremad"]["groups"] == {"1025": {"clips": 1, "accuracy": 1.0}}

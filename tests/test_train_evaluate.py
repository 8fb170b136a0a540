"""Scoring: each corpus within its own label set, and per speaker (TESS: per word)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train.card import _per_group
from train.corpora import Clip
from train.evaluate import score

LABELS = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")


def _clip(corpus: str, group: str, label: str) -> Clip:
    # groups are corpus-qualified, as the corpus loaders make them ("ravdess:04")
    return Clip(Path(f"{corpus}/{group}/{label}.flac"), label, corpus, f"{corpus}:{group}", f"{corpus}:{group}")


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
    assert out["ravdess"]["groups"] == {"ravdess:04": {"clips": 2, "accuracy": 0.5},
                                        "ravdess:13": {"clips": 3, "accuracy": round(2 / 3, 4)}}
    assert out["cremad"]["groups"] == {"cremad:1025": {"clips": 1, "accuracy": 1.0}}
    # the card lists few speakers by name (without the corpus), many as a range
    card = {"corpora": {c: out[c] for c in ("ravdess", "cremad")}}
    assert _per_group(card).strip() == "Per test speaker (TESS: per word): ravdess 04 50%, 13 67%; cremad 1025 100%."

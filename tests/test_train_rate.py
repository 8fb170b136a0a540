"""Training and evaluation work at the model's sample rate (``FeatureConfig.sr``), not
at a fixed 16 kHz: evaluation decodes and trims at the rate the model carries, and a fit
whose data and features disagree on the rate is refused before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

import train.evaluate
from serstream.decode import load_audio
from serstream.features import FeatureConfig
from serstream.vad import VadConfig, trim
from tiny_model import build, metadata
from train.corpora import LABELS, scan
from train.fit import FitConfig
from train.fit_cnn import CnnConfig
from train.prepare import DataConfig


def test_evaluation_decodes_and_trims_at_the_models_rate(tmp_path, data_dir, monkeypatch):
    path = build(tmp_path / "8k.onnx", metadata(FeatureConfig(sr=8000), labels=LABELS))
    first: dict = {}
    for c in scan(data_dir).clips:  # one clip per corpus
        first.setdefault(c.corpus, c)
    clips = sorted(first.values(), key=lambda c: str(c.path))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"parts": {"test": {"files": [str(c.path.relative_to(data_dir)) for c in clips]}}}))
    scored: list[np.ndarray] = []
    real_predict = train.evaluate.predict

    def spy(model, audio):  # the real scoring, remembering what it was given
        scored.extend(audio)
        return real_predict(model, audio)

    monkeypatch.setattr(train.evaluate, "predict", spy)
    result, used = train.evaluate.evaluate_model(path, data_dir, tmp_path / "cache", split, "test")
    assert [c.path for c in used] == [c.path for c in clips]
    assert sum(r["clips"] for r in result["corpora"].values()) == len(clips)
    for c, audio in zip(used, scored, strict=True):
        expected = trim(load_audio(c.path, 8000).samples, 8000, VadConfig())
        assert np.array_equal(audio, expected), c.path.name


def test_a_fit_whose_data_and_features_disagree_on_the_rate_is_refused_at_once():
    with pytest.raises(ValueError, match="features at 8000 Hz but data prepared at 16000 Hz"):
        FitConfig(kind="mfcc", cnn=CnnConfig(features=FeatureConfig(sr=8000)))
    cfg = FitConfig(kind="mfcc", data=DataConfig(sr=8000), cnn=CnnConfig(features=FeatureConfig(sr=8000)))
    assert cfg.features.sr == cfg.data.sr == 8000

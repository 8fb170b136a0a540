"""``python -m train``: user errors are one line and a non-zero exit; evaluate writes its files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import torch

from serstream.features import FeatureConfig
from serstream.model import ModelMetadata
from serstream.vad import VadConfig
from train.__main__ import main
from train.corpora import LABELS, scan
from train.export import export
from train.net import EmotionCNN


def test_missing_data_dir_is_one_line(tmp_path, capsys):
    for cmd in ("fit", "eda"):
        assert main([cmd, "--data", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"train: error: data directory not found: {tmp_path / 'nope'}"]


def test_folder_without_corpora_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["fit", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                 "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("train: error: no clips of ravdess")


def test_missing_model_is_one_line_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "train", "evaluate", "--model", str(tmp_path / "x.onnx"),
                        "--data", str(tmp_path), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and r.stderr.strip().startswith("train: error:")


def test_evaluate_any_model_on_any_folder(tmp_path, data_dir):
    # a small folder laid out like the corpora (FLAC and Ogg/Opus), three clips each
    per_corpus: dict[str, int] = {}
    for c in scan(data_dir).clips:
        if per_corpus.get(c.corpus, 0) < 3:
            per_corpus[c.corpus] = per_corpus.get(c.corpus, 0) + 1
            dest = tmp_path / "data" / c.path.relative_to(data_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(c.path, dest)
    torch.manual_seed(0)
    cfg = FeatureConfig()
    meta = ModelMetadata(labels=LABELS, features=cfg, mean=(0.0,) * cfg.n_features,
                         std=(1.0,) * cfg.n_features, vad=VadConfig(), model_id="t")
    model = export(EmotionCNN(cfg.n_features, len(LABELS), width=16).eval(), meta, tmp_path / "m.onnx")
    out = tmp_path / "out"
    assert main(["evaluate", "--model", str(model), "--data", str(tmp_path / "data"), "--out", str(out),
                 "--cache", str(tmp_path / "cache")]) == 0
    metrics = json.loads((out / "m.metrics.json").read_text())
    assert set(metrics["corpora"]) == {"ravdess", "cremad", "tess", "savee"}
    assert all(r["clips"] == 3 and 0 <= r["accuracy"] <= 1 for r in metrics["corpora"].values())
    assert (out / "m.confusion.png").read_bytes()[:4] == b"\x89PNG"

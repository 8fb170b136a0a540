"""Train and serve agree: same features, same scores, and a short real fit the daemon runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from procs import EXAMPLES, serstream
from serstream.decode import load_audio
from serstream.features import FeatureConfig
from serstream.model import EmotionModel, ModelMetadata
from serstream.vad import VadConfig, trim
from train.corpora import LABELS, scan
from train.dataset import AudioCache
from train.export import export, max_difference
from train.fit import FitConfig, fit
from train.fit_cnn import CnnConfig
from train.net import EmotionCNN
from train.prepare import DataConfig


def _meta() -> ModelMetadata:
    cfg = FeatureConfig()
    return ModelMetadata(labels=LABELS, features=cfg, mean=(0.0,) * cfg.n_features,
                         std=(1.0,) * cfg.n_features, vad=VadConfig(), model_id="t")


def test_onnx_and_pytorch_agree(tmp_path):
    torch.manual_seed(0)
    net = EmotionCNN(120, len(LABELS), width=32, clip_norm=True)
    net.eval()
    path = export(net, _meta(), tmp_path / "m.onnx")
    assert max_difference(net, path, lengths=(1, 2, 3, 50, 777)) < 1e-5


@pytest.mark.parametrize("clip_norm", [False, True])
def test_masked_batch_equals_single_clip(clip_norm):
    """A padded clip in a training batch scores as it does alone in the daemon."""
    torch.manual_seed(0)
    net = EmotionCNN(120, len(LABELS), width=32, clip_norm=clip_norm).eval()
    a, b = torch.randn(1, 37, 120), torch.randn(1, 90, 120)
    x = torch.zeros(2, 90, 120)
    x[0, :37], x[1] = a[0], b[0]
    m = torch.zeros(2, 90)
    m[0, :37], m[1] = 1, 1
    with torch.no_grad():
        batch = net(x, m)
        assert torch.allclose(batch[0], net(a)[0], atol=1e-5)
        assert torch.allclose(batch[1], net(b)[0], atol=1e-5)


def test_train_features_equal_serving_features(tmp_path, data_dir):
    """What fit trains on for a clip (decode -> VAD trim -> MFCC, through the caches) is
    bit for bit what the daemon computes for that clip from the exported model."""
    path = export(EmotionCNN(120, len(LABELS), width=16).eval(), _meta(), tmp_path / "m.onnx")
    served = EmotionModel(path)
    first: dict = {}
    for c in scan(data_dir).clips:  # one clip per corpus: FLAC and Ogg/Opus
        first.setdefault(c.corpus, c)
    clips = list(first.values())
    assert len(clips) == 4
    for attempt in range(2):  # the second pass reads both caches from disk
        cache = AudioCache(tmp_path / "cache", VadConfig(), FeatureConfig().sr)
        ok, audio = cache.trimmed(clips)
        train_side = cache.features(ok, audio, FeatureConfig())
        for c, f in zip(ok, train_side, strict=True):
            serve_side = served.features(trim(load_audio(c.path).samples))
            assert np.array_equal(f, serve_side), (attempt, c.path.name)
    clip = EXAMPLES / "sad_savee_DC_sa01.wav"
    y = load_audio(clip).samples
    # and the daemon cuts a replayed clip exactly where training trimmed it
    r = serstream("replay", "--model", path, "--no-publish", "--json", "--speed", "0",
                  "--partial-interval-ms", "0", clip)
    finals = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(finals) == 1
    assert round(finals[0]["end"] - finals[0]["start"], 2) == round(len(trim(y)) / 16000, 2)


def test_short_fit_produces_a_model_the_daemon_runs(tmp_path, data_dir):
    cfg = FitConfig(kind="mfcc", name="tiny-fit", data=DataConfig(limit=8), seen_speakers=False,
                    cnn=CnnConfig(epochs=2, width=32))
    card = fit(data_dir, tmp_path / "out", tmp_path / "cache", cfg)
    model_path = tmp_path / "out" / "tiny-fit.onnx"
    for suffix in (".onnx", ".json", ".md", ".split.json", ".confusion.png"):
        assert (tmp_path / "out" / f"tiny-fit{suffix}").exists(), suffix
    assert card["onnx_vs_torch_max_abs_diff"] < 1e-4
    assert set(card["test"]["corpora"]) <= {"ravdess", "cremad", "tess", "savee"}
    model = EmotionModel(model_path)
    assert model.labels == LABELS
    prov = model.meta.provenance
    assert {"trained_on", "created", "command", "test_metrics"} <= set(prov)
    assert prov["test_metrics"].keys() == card["test"]["corpora"].keys()
    pred = model.predict(load_audio(EXAMPLES / "angry_cremad_1001_DFA_ANG_XX.wav").samples)
    assert pred.label in LABELS and 0 < pred.confidence <= 1
    r = serstream("replay", "--model", model_path, "--no-publish", "--json", "--speed", "0",
                  EXAMPLES / "angry_cremad_1001_DFA_ANG_XX.wav")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["label"] in LABELS


def test_eda_writes_its_figures(tmp_path, data_dir):
    from train.eda import eda

    written = eda(data_dir, tmp_path)
    assert {p.name for p in written} == {"label_distribution.png", "emotions_waveform_mel_mfcc.png",
                                         "augmentations.png"}
    for p in written:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000

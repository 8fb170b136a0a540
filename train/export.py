"""PyTorch -> ONNX with a dynamic time axis and the serstream metadata document."""

from __future__ import annotations

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
    torch.onnx.export(
        wrapper, (dummy,), str(path), input_names=["features"], output_names=["probabilities"],
        dynamic_axes={"features": {0: "batch", 1: "time"}, "probabilities": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    model = onnx.load(str(path))
    for k, v in metadata_dict(meta).items():
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

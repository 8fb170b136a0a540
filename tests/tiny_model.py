"""Small real ONNX models for tests: mean over time -> linear -> softmax.

Built with the ``onnx`` helper API so tests can also make *broken* models (wrong
metadata, wrong shapes) and check the daemon refuses them with a clear message.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from serstream.features import FeatureConfig
from serstream.model import METADATA_KEY, ModelMetadata
from serstream.vad import VadConfig

LABELS = ("neutral", "happy", "sad", "angry")


def metadata(config: FeatureConfig | None = None, labels=LABELS, **kw) -> ModelMetadata:
    config = config or FeatureConfig()
    n = config.n_features
    return ModelMetadata(
        labels=tuple(labels), features=config, mean=(0.0,) * n, std=(1.0,) * n,
        sample_rate=config.sr, vad=kw.pop("vad", VadConfig()), model_id=kw.pop("model_id", "tiny-test"),
        provenance={"trained_on": "nothing: a test model"}, **kw,
    )


def build(path: Path, meta: ModelMetadata | None = None, *, meta_json: str | None = None,
          n_features: int | None = None, n_labels: int | None = None, seed: int = 0,
          fill: float | None = None, head: str = "softmax", time_axis: int | str = "time",
          batch_axis: int | str = "batch", nan_after_frames: int | None = None) -> Path:
    """Write a model to ``path``; ``meta_json`` overrides the metadata text verbatim;
    ``fill`` sets every weight to one value (NaN: a broken model whose outputs are NaN).

    Graphs that cannot serve, as users have handed them to the daemon: ``head``
    ``"logits"`` (no softmax) or ``"int64"`` (the probabilities cast to integers); a
    fixed ``time_axis`` or ``batch_axis``; ``nan_after_frames``: NaN for every input
    longer than that many frames (fine on a short test input, broken on real segments)."""
    meta = meta or metadata()
    f = n_features or meta.features.n_features
    n_out = n_labels or len(meta.labels)
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal((f, n_out)) * 0.05 if fill is None else np.full((f, n_out), fill)
    w = numpy_helper.from_array(weights.astype(np.float32), "W")
    b = numpy_helper.from_array(np.zeros(n_out, np.float32), "B")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["features", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["logits0"]),
        helper.make_node("Add", ["logits0", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["softmax"], axis=-1),
    ]
    inits = [w, b, axes]
    out, out_type = ("logits" if head == "logits" else "softmax"), TensorProto.FLOAT
    if head == "int64":
        nodes.append(helper.make_node("Cast", [out], ["as_int"], to=TensorProto.INT64))
        out, out_type = "as_int", TensorProto.INT64
    if nan_after_frames is not None:  # + 0 * sqrt(limit - frames): NaN once frames > limit
        inits += [numpy_helper.from_array(np.array([1], np.int64), "one"),
                  numpy_helper.from_array(np.array([nan_after_frames], np.float32), "limit"),
                  numpy_helper.from_array(np.array([0.0], np.float32), "zero")]
        nodes += [
            helper.make_node("Shape", ["features"], ["shape"]),
            helper.make_node("Gather", ["shape", "one"], ["frames_i"], axis=0),
            helper.make_node("Cast", ["frames_i"], ["frames"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["limit", "frames"], ["room"]),
            helper.make_node("Sqrt", ["room"], ["root"]),
            helper.make_node("Mul", ["root", "zero"], ["nothing"]),
            helper.make_node("Add", [out, "nothing"], ["guarded"]),
        ]
        out = "guarded"
    nodes.append(helper.make_node("Identity", [out], ["probabilities"]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch_axis, time_axis, f])],
        [helper.make_tensor_value_info("probabilities", out_type, [batch_axis, n_out])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    text = meta.to_json() if meta_json is None else meta_json
    if text is not None:
        helper.set_model_props(model, {METADATA_KEY: text})
    onnx.save(model, str(path))
    return path


def mutate(meta: ModelMetadata, **changes) -> str:
    """Metadata JSON with fields replaced (nested keys as 'features.n_fft')."""
    doc = json.loads(meta.to_json())
    for key, value in changes.items():
        target = doc
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        if value is ...:
            target.pop(last, None)
        else:
            target[last] = value
    return json.dumps(doc)


def build_slow(path: Path, seconds: float, size: int = 1024, meta: ModelMetadata | None = None) -> Path:
    """A model that really takes at least ``seconds`` per call on this machine, now: a
    chain of ``size``-square matmuls on a matrix derived from the input (so ONNX Runtime
    cannot fold it away), as many as a timed trial on one thread (the daemon's default)
    says are needed. A fixed chain was ~0.25 s on one machine and 0.08 s on the next, so
    tests that need processing to fall behind real time stopped falling behind."""
    trial = _slow_chain(path, 4, size, meta)
    per_call = _seconds_per_call(trial) / 4
    return _slow_chain(path, max(1, math.ceil(seconds / per_call)), size, meta)


def _seconds_per_call(path: Path) -> float:
    """The fastest of a few calls on a 2 s input: the nearest to this machine's unloaded
    speed, so whatever runs beside the test later can only make the model slower than
    asked, not faster."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 200, session.get_inputs()[0].shape[2]), np.float32)
    session.run(None, {"features": x})  # the first call pays for allocation
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        session.run(None, {"features": x})
        times.append(time.perf_counter() - t0)
    return min(times)


def _slow_chain(path: Path, matmuls: int, size: int, meta: ModelMetadata | None) -> Path:
    meta = meta or metadata(model_id="slow-test")
    f = meta.features.n_features
    n_out = len(meta.labels)
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array([size, f], np.int64), "grid"),
        numpy_helper.from_array(rng.standard_normal((f, size)).astype(np.float32) * 0.01, "Win"),
        numpy_helper.from_array((rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32), "Wsq"),
        numpy_helper.from_array(rng.standard_normal((size, n_out)).astype(np.float32) * 0.01, "Wout"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["features", "axes"], ["pooled"], keepdims=0),  # [1, f]
        helper.make_node("Expand", ["pooled", "grid"], ["wide"]),  # [size, f]
        helper.make_node("MatMul", ["wide", "Win"], ["z0"]),  # [size, size]
    ]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"z{i}", "Wsq"], [f"m{i}"]))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"z{i + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"z{matmuls}", "axes0"], ["row"], keepdims=1),  # [1, size]
        helper.make_node("MatMul", ["row", "Wout"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "axes0"))
    return _save(path, "slow", nodes, inits, meta)


def build_heavy(path: Path, steps: int = 200, width: int = 64, meta: ModelMetadata | None = None) -> Path:
    """A model whose cost grows with the cube of the segment's length: a chain of
    ``steps`` products of the ``frames x frames`` similarity matrix with itself.
    Negligible on the daemon's short test input at load (50 frames), minutes on a 20 s
    segment (2000 frames, ~16 GFLOP a step): a classification no stop can wait for."""
    meta = meta or metadata(model_id="heavy-test")
    f = meta.features.n_features
    n_out = len(meta.labels)
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((f, width)).astype(np.float32) * 0.01, "Win"),
        numpy_helper.from_array(rng.standard_normal((1, n_out)).astype(np.float32), "Wout"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
        numpy_helper.from_array(np.array([0.001], np.float32), "scale"),
    ]
    nodes = [
        helper.make_node("MatMul", ["features", "Win"], ["z"]),  # [1, T, width]
        helper.make_node("Tanh", ["z"], ["zt"]),
        helper.make_node("Transpose", ["zt"], ["ztT"], perm=[0, 2, 1]),  # [1, width, T]
        helper.make_node("MatMul", ["zt", "ztT"], ["g0"]),  # [1, T, T]
    ]
    for i in range(steps):
        nodes.append(helper.make_node("MatMul", [f"g{i}", f"g{i}"], [f"p{i}"]))  # T^3
        nodes.append(helper.make_node("Mul", [f"p{i}", "scale"], [f"q{i}"]))
        nodes.append(helper.make_node("Tanh", [f"q{i}"], [f"g{i + 1}"]))
    nodes += [
        helper.make_node("ReduceMean", [f"g{steps}", "axes"], ["m"], keepdims=0),  # [1]
        helper.make_node("Unsqueeze", ["m", "one"], ["m2"]),  # [1, 1]
        helper.make_node("MatMul", ["m2", "Wout"], ["logits"]),  # [1, n_out]
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    return _save(path, "heavy", nodes, inits, meta)


def _save(path: Path, name: str, nodes: list, inits: list, meta: ModelMetadata,
          inputs: tuple = (), outputs: tuple = ()) -> Path:
    """A graph from features ``[1, time, n_features]`` (and ``inputs``) to probabilities
    ``[1, n_labels]`` (and ``outputs``), with ``meta`` as its serstream metadata."""
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, "time", meta.features.n_features]),
         *inputs],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, len(meta.labels)]), *outputs],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.save(model, str(path))
    return path


def build_voiced(path: Path, meta: ModelMetadata | None = None, seed: int = 0) -> Path:
    """A model that adapts to a voice, as the Whisper graph does (train/whisper.py): the
    optional input ``voice`` (an initializer, zeros by default) and the outputs
    ``probabilities`` (the global head, on the mean feature frame), ``voice_probabilities``
    (another head, on the mean frame less the voice) and ``statistics`` (the mean frame,
    shaped ``[1, 1, n_features]`` like the voice). Small enough to reason about: the
    statistics of a segment are the mean of its normalised feature frames."""
    meta = meta or metadata(model_id="tiny-voiced")
    f, n_out = meta.features.n_features, len(meta.labels)
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((f, n_out)) * 0.05).astype(np.float32), "W"),
        numpy_helper.from_array((rng.standard_normal((f, n_out)) * 0.01).astype(np.float32), "W_voice"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.zeros((1, 1, f), np.float32), "voice"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["features", "axes"], ["pooled3"], keepdims=1),
        helper.make_node("Identity", ["pooled3"], ["statistics"]),
        helper.make_node("ReduceMean", ["pooled3", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
        helper.make_node("Sub", ["pooled3", "voice"], ["away3"]),
        helper.make_node("ReduceMean", ["away3", "axes"], ["away"], keepdims=0),
        helper.make_node("MatMul", ["away", "W_voice"], ["voice_logits"]),
        helper.make_node("Softmax", ["voice_logits"], ["voice_probabilities"], axis=-1),
    ]
    return _save(path, "tiny-voiced", nodes, inits, meta,
                 inputs=(helper.make_tensor_value_info("voice", TensorProto.FLOAT, [1, 1, f]),),
                 outputs=(helper.make_tensor_value_info("voice_probabilities", TensorProto.FLOAT, [1, n_out]),
                          helper.make_tensor_value_info("statistics", TensorProto.FLOAT, [1, 1, f])))

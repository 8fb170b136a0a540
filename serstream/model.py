"""The emotion model: an ONNX file that describes itself, served by ONNX Runtime.

A model carries, under the metadata key ``serstream``, a JSON document
(:class:`ModelMetadata`) with its label list, sample rate, feature configuration and
input normalisation. The daemon builds its feature extractor *from that document*, so
a model can never be fed features computed differently from the ones it was trained
on; a model whose document is missing, malformed or asks for features this code
cannot reproduce is refused with a one-line reason.

Graph contract: one float32 input ``[batch, time, n_features]`` (time dynamic) and
one output ``[batch, n_labels]``, either probabilities or logits (``output_kind``).

:meth:`EmotionModel.classify` is the one path from audio to probabilities: the daemon,
``train evaluate`` and the validation of ``train fit`` all call it, so what training
measures is what the daemon serves.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serstream.errors import ModelError
from serstream.features import FeatureConfig, FeatureConfigError, FeatureExtractor
from serstream.limits import THREADS, is_int
from serstream.vad import VAD_RATES, VadConfig

__all__ = [
    "METADATA_KEY",
    "STATISTICS_OUTPUT",
    "VOICE_INPUT",
    "VOICE_OUTPUT",
    "FORMAT_VERSION",
    "ModelMetadata",
    "EmotionModel",
    "default_model_path",
    "shipped_model_dir",
    "shipped_model_path",
    "softmax",
]

METADATA_KEY = "serstream"
FORMAT_VERSION = 1
# A graph that adapts to the speaker: an optional input (its initializer is the default
# voice) and two outputs besides the global probabilities; see serstream.voice
VOICE_INPUT = "voice"
VOICE_OUTPUT = "voice_probabilities"
STATISTICS_OUTPUT = "statistics"


def shipped_model_dir() -> Path:
    """The folder of the models shipped inside the package (``serstream/models/``).

    Found through :mod:`importlib.resources`, so the same call works from a wheel, an
    editable install and a checkout (where ``serstream/models`` links to the top-level
    ``models/`` that training writes to). ONNX Runtime needs real files: a package run
    from a zip archive is refused with a one-line reason.
    """
    folder = importlib.resources.files("serstream").joinpath("models")
    if not isinstance(folder, Path):
        raise ModelError(f"the shipped models are inside an archive ({folder}): "
                         "install serstream unpacked, or pass --model")
    return folder


def shipped_model_path(filename: str) -> Path:
    """A model file shipped with the package, by file name (see :func:`shipped_model_dir`)."""
    return shipped_model_dir() / filename


def default_model_path() -> Path:
    """``$SERSTREAM_MODEL`` (a shipped model's short name or a path) if set, else the
    shipped default model (see :mod:`serstream.catalog`)."""
    from serstream.catalog import resolve  # the catalog names files this module loads

    return resolve(None)


@dataclass(frozen=True)
class ModelMetadata:
    """What a model must say about itself for the daemon to serve it."""

    labels: tuple[str, ...]
    features: FeatureConfig
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sample_rate: int = 16000
    output_kind: str = "probabilities"
    min_frames: int = 1
    max_frames: int | None = None  # longest input the graph takes; longer ones are split
    vad: VadConfig | None = None
    model_id: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def to_json(self) -> str:
        doc = {
            "format": self.format,
            "model_id": self.model_id,
            "labels": list(self.labels),
            "sample_rate": self.sample_rate,
            "features": self.features.to_dict(),
            "normalisation": {"mean": list(self.mean), "std": list(self.std)},
            "output_kind": self.output_kind,
            "min_frames": self.min_frames,
            "max_frames": self.max_frames,
            "vad": None if self.vad is None else self.vad.to_dict(),
            "provenance": self.provenance,
        }
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        """Parse and check; every problem becomes a :class:`ModelError` naming it."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"model metadata is not valid JSON ({exc.msg})") from None
        if not isinstance(doc, dict):
            raise ModelError("model metadata must be a JSON object")
        fmt = doc.get("format")
        if fmt != FORMAT_VERSION:
            raise ModelError(
                f"model metadata format {fmt!r} is not supported (this serstream reads {FORMAT_VERSION})"
            )
        unknown = sorted(set(doc) - _METADATA_KEYS)
        if unknown:
            raise ModelError(f"model metadata has unknown keys {unknown} (a newer serstream's model?)")
        labels = doc.get("labels")
        if (
            not isinstance(labels, list)
            or not 2 <= len(labels) <= MAX_LABELS
            or not all(isinstance(x, str) and 0 < len(x) <= MAX_NAME for x in labels)
            or len(set(labels)) != len(labels)
        ):
            raise ModelError(f"model metadata 'labels' must be a list of 2 to {MAX_LABELS} distinct names "
                             f"of 1 to {MAX_NAME} characters")
        model_id = doc.get("model_id", "")
        if model_id is not None and (not isinstance(model_id, str) or len(model_id) > MAX_NAME):
            raise ModelError(f"model metadata 'model_id' must be a string of at most {MAX_NAME} characters")
        provenance = doc.get("provenance", {})
        if provenance is not None and not isinstance(provenance, dict):
            raise ModelError("model metadata 'provenance' must be an object")
        try:
            features = FeatureConfig.from_dict(doc.get("features"))
        except FeatureConfigError as exc:
            raise ModelError(f"model asks for features this serstream cannot reproduce: {exc}") from None
        sr = doc.get("sample_rate")
        if not is_int(sr):
            raise ModelError(f"model sample_rate must be an integer, got {sr!r}")
        if sr != features.sr:
            raise ModelError(f"model sample_rate {sr!r} disagrees with its feature sr {features.sr}")
        if sr not in VAD_RATES:
            raise ModelError(f"model sample rate {sr} Hz is not one WebRTC VAD supports "
                             f"({', '.join(map(str, VAD_RATES))} Hz)")
        norm = doc.get("normalisation")
        if not isinstance(norm, dict):
            raise ModelError("model metadata 'normalisation' must be an object with 'mean' and 'std'")
        mean, std = norm.get("mean"), norm.get("std")
        n = features.n_features
        for name, vec in (("mean", mean), ("std", std)):
            if not isinstance(vec, list) or len(vec) != n or not all(isinstance(v, (int, float)) for v in vec):
                raise ModelError(f"model normalisation '{name}' must be {n} numbers")
        if any(not np.isfinite(v) or v <= 0 for v in std) or not all(np.isfinite(mean)):
            raise ModelError("model normalisation must be finite with positive std")
        kind = doc.get("output_kind", "probabilities")
        if kind not in ("probabilities", "logits"):
            raise ModelError(f"model output_kind {kind!r} is not 'probabilities' or 'logits'")
        min_frames = doc.get("min_frames", 1)
        max_frames = doc.get("max_frames")
        if not is_int(min_frames) or not 1 <= min_frames <= MAX_MIN_FRAMES:
            raise ModelError(f"model min_frames must be an integer in [1, {MAX_MIN_FRAMES}], got {min_frames!r}")
        if max_frames is not None and (not is_int(max_frames) or not min_frames <= max_frames <= 10**6):
            raise ModelError(f"model max_frames must be null or an integer in [min_frames, 1000000], "
                             f"got {max_frames!r}")
        vad = doc.get("vad")
        try:
            vad_cfg = None if vad is None else VadConfig.from_dict(vad)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"model VAD settings are invalid: {exc}") from None
        return cls(
            labels=tuple(labels),
            features=features,
            mean=tuple(float(v) for v in mean),
            std=tuple(float(v) for v in std),
            sample_rate=int(sr),
            output_kind=kind,
            min_frames=min_frames,
            max_frames=max_frames,
            vad=vad_cfg,
            model_id=model_id or "",
            provenance=provenance or {},
        )

    def summary(self) -> dict[str, Any]:
        out = json.loads(self.to_json())
        out["normalisation"] = f"{len(self.mean)} means / stds"
        return out


MAX_MIN_FRAMES = 3000  # a model may ask to see at least 30 s of 10 ms frames, no more
MAX_LABELS = 1000
MAX_NAME = 200  # characters of a label or a model id: each goes into every event
# the keys a model may carry are those the writer writes: read off it, not kept by hand
_METADATA_KEYS = frozenset(json.loads(ModelMetadata(("a", "b"), FeatureConfig(), (0.0,), (1.0,)).to_json()))


_FLOAT_TENSORS = ("tensor(float)", "tensor(double)", "tensor(float16)")



def softmax(x: np.ndarray) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) - np.max(x)
    e = np.exp(z)
    return e / e.sum()


class ModelOutputError(ValueError):
    """The graph answered with something that is not a probability per label."""


class ModelInterrupted(RuntimeError):
    """A graph call cut short by :meth:`EmotionModel.interrupt` (a stop whose time ran out)."""


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Classification:
    """What :meth:`EmotionModel.classify` makes of one segment, with what it cost."""

    labels: tuple[str, ...]
    probabilities: np.ndarray  # float64, one per label, summing to 1
    features_ms: float
    inference_ms: float
    frames: int
    chunks: int = 1  # > 1 when the segment was longer than the model's max_frames
    # the pooled encoder statistics (graphs that adapt to a voice; None otherwise), and
    # the name of the enrolled voice whose head answered (None: the global head did)
    statistics: np.ndarray | None = None
    voice: str | None = None

    @property
    def adapted(self) -> bool:
        return self.voice is not None

    @property
    def best(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def label(self) -> str:
        return self.labels[self.best]

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.best])

    def prediction(self) -> Prediction:
        return Prediction(self.label, self.confidence,
                          {lab: float(p) for lab, p in zip(self.labels, self.probabilities, strict=True)})


class EmotionModel:
    """An ONNX Runtime session plus the feature extractor its metadata calls for.

    Parameters
    ----------
    path : path to the ``.onnx`` file
    threads : intra-op threads for ONNX Runtime; 1 keeps latency predictable and
        leaves the other cores to capture and to other streams.

    Raises
    ------
    ModelError
        Missing file, not an ONNX model, no serstream metadata, or a graph whose
        shapes disagree with its metadata.
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        if (why := THREADS.problem("threads", threads)) is not None:
            raise ValueError(why)
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception family
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first[:200]})") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelError(
                f"{self.path}: ONNX model has no '{METADATA_KEY}' metadata (labels, features); "
                "export it with `python -m train`"
            )
        try:
            self.meta = ModelMetadata.from_json(meta[METADATA_KEY])
        except ModelError as exc:
            raise ModelError(f"{self.path}: {exc}") from None
        self._check_graph()
        self.voice_shape = self._voice_contract()
        self._voice: tuple[np.ndarray, str] | None = None  # statistics and name, set together
        self.features = FeatureExtractor(self.meta.features)
        # one RunOptions for every call: setting its terminate flag from another thread
        # is how ONNX Runtime cuts a call short (checked between graph nodes)
        self._run_options = ort.RunOptions()
        self._interrupt_lock = threading.Lock()
        self._interrupted = False
        self._mean = np.asarray(self.meta.mean, dtype=np.float32)
        self._inv_std = (1.0 / np.asarray(self.meta.std, dtype=np.float64)).astype(np.float32)
        self.model_id = self.meta.model_id or self._file_id()

    def _check_graph(self) -> None:
        """The graph's declared contract against what :meth:`classify` will feed it:
        one float ``[1, time, n_features]`` input (time free, or fixed and matched by
        ``min_frames = max_frames``), one float ``[1, n_labels]`` output. What the
        declarations cannot show (NaN, logits where probabilities were promised) is
        for :meth:`warmup` to find out."""
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(f"{self.path}: expected one input and one output")
        self._input = inputs[0].name
        self._output = outputs[0].name
        n_features, n_labels = self.meta.features.n_features, len(self.meta.labels)
        in_shape, out_shape = inputs[0].shape, outputs[0].shape
        if len(in_shape) != 3 or (isinstance(in_shape[2], int) and in_shape[2] != n_features):
            raise ModelError(f"{self.path}: input shape {in_shape} does not take {n_features} features per frame")
        if inputs[0].type != "tensor(float)":
            raise ModelError(f"{self.path}: input is {inputs[0].type}, not the float features serstream computes")
        if isinstance(in_shape[0], int) and in_shape[0] != 1:
            raise ModelError(f"{self.path}: input batch axis is fixed at {in_shape[0]}; serstream sends one "
                             "segment at a time (make it 1 or free)")
        time_axis = in_shape[1]
        if isinstance(time_axis, int) and not self.meta.min_frames == self.meta.max_frames == time_axis:
            raise ModelError(f"{self.path}: input time axis is fixed at {time_axis} frames, but the metadata "
                             f"allows {self.meta.min_frames} to {self.meta.max_frames or 'any number of'} frames "
                             f"(set min_frames and max_frames to {time_axis}, or export a free time axis)")
        if outputs[0].type not in _FLOAT_TENSORS:
            raise ModelError(f"{self.path}: output is {outputs[0].type}, not float "
                             f"{self.meta.output_kind} (integers cannot be probabilities)")
        if len(out_shape) not in (1, 2):
            raise ModelError(f"{self.path}: output shape {out_shape} is not one value for each label")
        if isinstance(out_shape[-1], int) and out_shape[-1] != n_labels:
            raise ModelError(f"{self.path}: output has {out_shape[-1]} classes, metadata lists {n_labels}")

    def _voice_contract(self) -> tuple[int, ...] | None:
        """The shape of the voice the graph adapts to, or None for a graph that does not:
        it must have the optional ``voice`` input and both extra outputs, or neither."""
        optional = {i.name: i for i in self._session.get_overridable_initializers()}
        outputs = {o.name for o in self._session.get_outputs()}
        extra = {VOICE_OUTPUT, STATISTICS_OUTPUT} & outputs
        if VOICE_INPUT not in optional and not extra:
            return None
        if VOICE_INPUT not in optional or len(extra) != 2:
            raise ModelError(f"{self.path}: a graph that adapts to a voice needs the optional input "
                             f"'{VOICE_INPUT}' and the outputs '{VOICE_OUTPUT}' and '{STATISTICS_OUTPUT}'")
        return tuple(int(d) for d in optional[VOICE_INPUT].shape)

    @property
    def adapts(self) -> bool:
        """Whether the graph can adapt to an enrolled voice (see :mod:`serstream.voice`)."""
        return self.voice_shape is not None

    @property
    def voice(self) -> np.ndarray | None:
        return None if self._voice is None else self._voice[0]

    @property
    def voice_name(self) -> str | None:
        return None if self._voice is None else self._voice[1]

    def use_voice(self, statistics: np.ndarray | None, name: str = "enrolled") -> None:
        """Classify from now on against this voice (an enrolment's mean statistics, see
        :mod:`serstream.voice`), or with the global head again (None)."""
        if statistics is None:
            self._voice = None
            return
        if not self.adapts:
            raise ModelError(f"{self.path}: this model does not adapt to a voice")
        v = np.asarray(statistics, dtype=np.float32)
        if v.shape != self.voice_shape or not np.isfinite(v).all():
            raise ModelError(f"{self.path}: a voice must be {self.voice_shape} finite numbers, got {v.shape}")
        self._voice = (v, name)

    def _file_id(self) -> str:
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]
        return f"{self.path.stem}-{digest}"

    @property
    def labels(self) -> tuple[str, ...]:
        return self.meta.labels

    @property
    def sample_rate(self) -> int:
        return self.meta.sample_rate

    def warmup(self) -> None:
        """Compile the feature kernels and try the graph on test inputs (0.5 s of
        silence, 1 s of noise at -30 dBFS): the first segment is then fast, and a
        model that cannot serve is refused now, in one line (:class:`ModelError`),
        not found out on every segment. What it answers must be one finite value per
        label, and probabilities where its metadata says so."""
        tests = {
            "0.5 s of silence": np.zeros(self.sample_rate // 2, dtype=np.float32),
            "1 s of noise": (np.random.default_rng(0).standard_normal(self.sample_rate) * 10 ** (-30 / 20)
                             ).astype(np.float32),
        }
        for what, audio in tests.items():
            try:
                self.classify(audio)
            except ModelOutputError as exc:
                raise ModelError(f"{self.path}: refused: on {what}, {exc}") from None
            except Exception as exc:  # onnxruntime raises its own exception family
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelError(f"{self.path}: refused: the graph fails on {what} ({first[:200]})") from None

    def classify(self, audio: np.ndarray) -> Classification:
        """The one path from a segment's samples (mono, model rate) to probabilities.

        Features by the model's own configuration, its normalisation, padding to
        ``min_frames``, segments longer than ``max_frames`` split into equal chunks whose
        probabilities are averaged by length (never an error), logits turned into
        probabilities, and the answer checked: a non-finite or out-of-range output
        raises :class:`ModelOutputError` instead of reaching a subscriber.
        """
        t0 = time.perf_counter()
        with self._interrupt_lock:  # an interrupt targets the call in progress, not this one
            self._interrupted = False
            self._run_options.terminate = False
        feats = self.features(audio)
        t1 = time.perf_counter()
        voice = self._voice  # one voice for the whole segment, whatever another thread sets
        probs, chunks, stats = self._probabilities(feats, None if voice is None else voice[0])
        t2 = time.perf_counter()
        return Classification(self.labels, probs, (t1 - t0) * 1000, (t2 - t1) * 1000, feats.shape[0], chunks,
                              stats, None if voice is None else voice[1])

    def interrupt(self) -> None:
        """Cut the classification in progress short, from another thread: it raises
        :class:`ModelInterrupted` within one graph node. The next call runs normally."""
        with self._interrupt_lock:
            self._interrupted = True
            self._run_options.terminate = True

    def _probabilities(self, feats: np.ndarray, voice: np.ndarray | None) -> tuple[np.ndarray, int, np.ndarray | None]:
        """Probabilities for one ``(n_frames, n_features)`` matrix, how many graph calls
        it took, and the pooled statistics (chunks weighted by their length)."""
        n = feats.shape[0]
        limit = self.meta.max_frames
        if limit is None or n <= limit:
            probs, stats = self._run(feats, voice)
            return probs, 1, stats
        chunks = math.ceil(n / limit)
        bounds = np.linspace(0, n, chunks + 1).round().astype(int)
        total = np.zeros(len(self.labels))
        total_stats = None
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            probs, stats = self._run(feats[lo:hi], voice)
            total += (hi - lo) * probs
            if stats is not None:
                total_stats = (hi - lo) * stats + (0 if total_stats is None else total_stats)
        return total / n, chunks, None if total_stats is None else (total_stats / n).astype(np.float32)

    def _run(self, feats: np.ndarray, voice: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        x = (feats - self._mean) * self._inv_std
        if x.shape[0] < self.meta.min_frames:
            pad = np.zeros((self.meta.min_frames - x.shape[0], x.shape[1]), dtype=np.float32)
            x = np.vstack([x, pad])
        if self._interrupted:  # between the chunks of a long segment
            raise ModelInterrupted("classification cut short")
        feed = {self._input: x[None].astype(np.float32, copy=False)}
        names = [self._output]
        if self.adapts:
            names = [VOICE_OUTPUT if voice is not None else self._output, STATISTICS_OUTPUT]
            if voice is not None:
                feed[VOICE_INPUT] = voice
        try:
            out, *rest = self._session.run(names, feed, self._run_options)
        except Exception:
            if self._interrupted:
                raise ModelInterrupted("classification cut short") from None
            raise
        row = np.asarray(out, dtype=np.float64).reshape(-1)
        if row.shape != (len(self.labels),) or not np.isfinite(row).all():
            raise ModelOutputError(f"model output {np.array2string(row, precision=3, threshold=10)} is not "
                                   f"{len(self.labels)} finite numbers")
        stats = np.asarray(rest[0], dtype=np.float32).reshape(self.voice_shape) if rest else None
        if self.meta.output_kind == "logits":
            return softmax(row), stats
        if row.min() < -1e-4 or row.max() > 1 + 1e-4 or abs(row.sum() - 1.0) > 1e-3:
            raise ModelOutputError(f"model output sums to {row.sum():.4g} with values in "
                                   f"[{row.min():.4g}, {row.max():.4g}]: not probabilities")
        row = np.clip(row, 0.0, None)
        return row / row.sum(), stats

    def predict(self, audio: np.ndarray) -> Prediction:
        """Label, confidence and every label's probability for one segment."""
        return self.classify(audio).prediction()


def metadata_dict(meta: ModelMetadata) -> dict[str, str]:
    """The ONNX ``metadata_props`` to write for ``meta`` (used by the exporter)."""
    return {METADATA_KEY: meta.to_json()}


__all__ += ["Classification", "ModelInterrupted", "ModelOutputError", "Prediction", "metadata_dict"]


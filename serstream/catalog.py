"""The models that ship inside the package, by short name.

``--model whisper`` (the default) is the Whisper-base encoder under a trained head: the
accurate one. ``--model fast`` is the MFCC CNN: a few milliseconds per segment, for small
machines and many streams. Any other value of ``--model`` is a path to an ONNX file.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serstream.errors import ModelError
from serstream.model import EmotionModel, shipped_model_path

__all__ = ["CATALOG", "DEFAULT", "Shipped", "cost_ms", "names", "resolve"]


@dataclass(frozen=True)
class Shipped:
    name: str
    filename: str
    summary: str

    @property
    def path(self) -> Path:
        return shipped_model_path(self.filename)


CATALOG: tuple[Shipped, ...] = (
    Shipped("whisper", "serstream-whisper.onnx",
            "Whisper-base encoder (OpenAI, MIT) + trained head: the accurate default"),
    Shipped("fast", "serstream-fast.onnx",
            "MFCC + compact CNN: a few ms per segment, for small machines and many streams"),
)
DEFAULT = "whisper"


def names() -> tuple[str, ...]:
    return tuple(s.name for s in CATALOG)


def by_name(name: str) -> Shipped | None:
    return next((s for s in CATALOG if s.name == name), None)


def resolve(spec: str | Path | None) -> Path:
    """``--model``'s value as a file: an existing path, else a short name, else
    ``$SERSTREAM_MODEL`` (a name or a path) when nothing was given, else the default."""
    if spec is None:
        spec = os.environ.get("SERSTREAM_MODEL") or DEFAULT
    text = str(spec)
    path = Path(text).expanduser()
    if path.exists():
        return path
    shipped = by_name(text)
    if shipped is not None:
        if not shipped.path.is_file():
            raise ModelError(f"shipped model {text!r} is missing from this installation ({shipped.path})")
        return shipped.path
    if os.sep not in text and not text.endswith(".onnx"):
        raise ModelError(f"no model named {text!r} (shipped: {', '.join(names())}) and no such file")
    return path


def cost_ms(model: EmotionModel, seconds: float = 3.0, repeats: int = 5) -> float:
    """Median milliseconds to classify ``seconds`` of audio here (features + inference):
    what one segment costs on this machine, with this model's threads."""
    rng = np.random.default_rng(0)
    y = (rng.standard_normal(int(seconds * model.sample_rate)) * 0.05).astype(np.float32)
    model.classify(y)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.classify(y)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))

"""An enrolled voice: how one speaker sounds when calm, for a model that adapts to it.

Why: a head trained on pooled encoder statistics learns voices as well as emotions, and
on a voice it never heard it mistakes the voice for an emotion. A model with a voice
head (:attr:`serstream.model.EmotionModel.adapts`) reads the statistics *less the
speaker's neutral voice* instead: in speaker cross-validation that took CREMA-D from
72.3 to 76.1%, RAVDESS from 72.3 to 75.4% and SAVEE, a corpus the head never saw, from
31.7 to 54.2% (README, "adapting to the voice"). The voice is the mean of the pooled
statistics of a few segments of the speaker's ordinary, calm speech, exactly as training
took it (the mean over a speaker's neutral clips, one value per clip), so ``serstream
enrol`` averages the finals of the very pipeline that will serve, one per segment.

A voice belongs to one model: statistics are the encoder's, and another model's encoder
(or head) reads them differently. The file names the model it was enrolled with and is
refused by any other, in one line.

The file is JSON (a person can read what it is, where it came from and when), with the
statistics as a flat list of float32 values and their shape.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from serstream.errors import UserError

if TYPE_CHECKING:
    from serstream.model import Classification, EmotionModel
    from serstream.vad import Segment

__all__ = ["FORMAT", "VERSION", "FEW_SEGMENTS", "Voice", "VoiceError", "Enrolment"]

FORMAT = "serstream-voice"
VERSION = 1
# training averaged 4 (RAVDESS) to ~12 (CREMA-D) neutral clips per speaker; below 3
# segments the mean is mostly the words said, not the voice
FEW_SEGMENTS = 3


class VoiceError(UserError):
    """A voice file that is missing, malformed, or made for another model."""


@dataclass(frozen=True)
class Voice:
    """A speaker's mean statistics, and what they were made from."""

    name: str
    model: str  # the model_id it was enrolled with: no other model may use it
    statistics: np.ndarray
    segments: int
    speech_s: float
    sources: tuple[str, ...] = ()
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def to_dict(self) -> dict[str, Any]:
        stats = np.asarray(self.statistics, dtype=np.float32)
        return {
            "format": FORMAT, "version": VERSION, "name": self.name, "model": self.model,
            "created": self.created, "segments": self.segments, "speech_s": round(self.speech_s, 3),
            "sources": list(self.sources), "shape": list(stats.shape),
            # float32 printed with 9 significant digits reads back bit for bit
            "statistics": [float(f"{v:.9g}") for v in stats.reshape(-1).tolist()],
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically: an interrupted enrolment never leaves half a voice behind
        (nor destroys the one that was there)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict()) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise VoiceError(f"cannot write the voice to {path}: {exc.strerror or exc}") from None
        return path

    @classmethod
    def load(cls, path: str | Path) -> Voice:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise VoiceError(f"voice file not found: {path} (make one with `serstream enrol`)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise VoiceError(f"cannot read the voice file {path}: {getattr(exc, 'strerror', None) or exc}") from None
        except json.JSONDecodeError as exc:
            raise VoiceError(f"{path}: not a voice file (not JSON: {exc.msg} at line {exc.lineno})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise VoiceError(f"{path}: not a voice file (no \"format\": \"{FORMAT}\"; make one with `serstream enrol`)")
        if doc.get("version") != VERSION:
            raise VoiceError(f"{path}: voice file version {doc.get('version')!r}; this serstream reads {VERSION}")
        try:
            shape = tuple(int(d) for d in doc["shape"])
            stats = np.asarray(doc["statistics"], dtype=np.float32)
            voice = cls(name=str(doc["name"]), model=str(doc["model"]), statistics=stats.reshape(shape),
                        segments=int(doc["segments"]), speech_s=float(doc["speech_s"]),
                        sources=tuple(str(s) for s in doc.get("sources", ())), created=str(doc.get("created", "")))
        except (KeyError, TypeError, ValueError) as exc:
            what = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:120]
            raise VoiceError(f"{path}: a damaged voice file ({what})") from None
        if not np.isfinite(voice.statistics).all():
            raise VoiceError(f"{path}: a damaged voice file (its statistics are not all finite)")
        return voice

    def check(self, model: EmotionModel, where: str = "the voice") -> None:
        """Refuse, in one line, a voice this model cannot use."""
        if not model.adapts:
            raise VoiceError(f"model {model.model_id} does not adapt to a voice: {where} needs a model with a "
                             "voice head (the shipped 'whisper' model, or one trained with `python -m train fit`)")
        if self.model != model.model_id:
            raise VoiceError(f"{where} ({self.name!r}) was enrolled with model {self.model}, not {model.model_id}: "
                             "enrol again with this model (`serstream enrol --model ...`)")
        if tuple(self.statistics.shape) != model.voice_shape:
            raise VoiceError(f"{where} ({self.name!r}) has shape {tuple(self.statistics.shape)}; model "
                             f"{model.model_id} takes {model.voice_shape}")


class Enrolment:
    """The finals of a pipeline, averaged into a voice (a :class:`~serstream.pipeline.Pipeline`
    result listener). With ``need_s``, ``enough`` is set once that much speech is in, so
    a live enrolment ends by itself."""

    def __init__(self, model: EmotionModel, need_s: float | None = None) -> None:
        if not model.adapts:
            raise VoiceError(f"model {model.model_id} does not adapt to a voice: there is nothing to enrol "
                             "(use the shipped 'whisper' model, or one trained with a voice head)")
        self.model = model
        self.need_s = need_s
        self.enough = threading.Event()
        self._sum = np.zeros(model.voice_shape, dtype=np.float64)
        self.segments = 0
        self.speech_s = 0.0

    def __call__(self, segment: Segment, result: Classification, sr: int) -> None:
        if not segment.final or result.statistics is None:
            return  # a partial's audio is part of its final's
        self._sum += result.statistics
        self.segments += 1
        self.speech_s += (segment.end - segment.start) / sr
        if self.need_s is not None and self.speech_s >= self.need_s:
            self.enough.set()

    def voice(self, name: str, sources: tuple[str, ...] = ()) -> Voice:
        if self.segments == 0:
            raise VoiceError("no speech was found to enrol: nothing written (speak for a few seconds in your "
                             "ordinary, calm voice, or give files with speech in them)", exit_code=1)
        mean = (self._sum / self.segments).astype(np.float32)
        if not np.isfinite(mean).all():  # a model answering NaN statistics: no voice to be had from it
            raise VoiceError(f"model {self.model.model_id} gave statistics that are not finite numbers: "
                             "nothing written", exit_code=1)
        return Voice(name=name, model=self.model.model_id, statistics=mean, segments=self.segments,
                     speech_s=self.speech_s, sources=sources)

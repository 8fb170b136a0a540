"""The four corpora, read by file name: one parser each, nothing guessed.

Label rules from ../shared/datasets.md. Every clip becomes a :class:`Clip`
(path, label, corpus, speaker, group); names that match no rule are reported and
skipped. Extensions .wav/.flac/.ogg and any sample rate are accepted (decoding is
serstream.decode's job), so the Kaggle bundle (``.wav`` at original rates) works too.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LABELS: tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")
CORPORA: tuple[str, ...] = ("ravdess", "cremad", "tess", "savee")
CORPUS_LABELS: dict[str, tuple[str, ...]] = {
    "ravdess": LABELS,
    "cremad": ("neutral", "happy", "sad", "angry", "fear", "disgust"),
    "tess": ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"),
    "savee": ("neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"),
}
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str
    corpus: str
    speaker: str  # corpus-qualified, e.g. "ravdess:12"
    group: str  # what the split keeps apart: the speaker, or for TESS the word
    gender: str = ""


class UnknownName(ValueError):
    """A file name that follows none of its corpus's rules."""


_RAVDESS = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
                     "05": "angry", "06": "fear", "07": "disgust", "08": "surprise"}


def parse_ravdess(stem: str) -> tuple[str, str, str]:
    """``MM-VV-EE-II-SS-RR-AA`` -> (label, speaker, gender). Actor odd = male."""
    m = _RAVDESS.match(stem)
    if not m or m.group(3) not in _RAVDESS_EMOTIONS or not 1 <= int(m.group(7)) <= 24:
        raise UnknownName(stem)
    actor = int(m.group(7))
    return _RAVDESS_EMOTIONS[m.group(3)], f"ravdess:{actor:02d}", "male" if actor % 2 else "female"


_CREMAD = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})$")
_CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy",
                    "NEU": "neutral", "SAD": "sad"}


def parse_cremad(stem: str) -> tuple[str, str]:
    """``AAAA_SSS_EEE_LL`` -> (label, speaker); the level may be one letter (``X``)."""
    m = _CREMAD.match(stem)
    if not m or m.group(3) not in _CREMAD_EMOTIONS:
        raise UnknownName(stem)
    return _CREMAD_EMOTIONS[m.group(3)], f"cremad:{m.group(1)}"


_TESS_EMOTIONS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
                  "neutral": "neutral", "ps": "surprise", "sad": "sad"}
_TESS_SPEAKERS = {"OAF": "OAF", "OA": "OAF", "YAF": "YAF"}


def parse_tess(stem: str) -> tuple[str, str, str]:
    """``SPK_word_emotion`` -> (label, speaker, word). The label is the last field;
    ``OA_`` is a known typo for ``OAF_``; folder names are not trusted."""
    parts = stem.split("_")
    if len(parts) < 3:
        raise UnknownName(stem)
    spk, word, emo = parts[0].upper(), "_".join(parts[1:-1]).lower(), parts[-1].lower()
    if spk not in _TESS_SPEAKERS or emo not in _TESS_EMOTIONS or not word:
        raise UnknownName(stem)
    return _TESS_EMOTIONS[emo], f"tess:{_TESS_SPEAKERS[spk]}", word


_SAVEE = re.compile(r"^([A-Z]{2})_(sa|su|a|d|f|h|n)(\d\d)$")
_SAVEE_EMOTIONS = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral",
                   "sa": "sad", "su": "surprise"}


def parse_savee(stem: str) -> tuple[str, str]:
    """``SPK_codeNN`` -> (label, speaker); ``sa``/``su`` are matched before ``a``/``s``."""
    m = _SAVEE.match(stem)
    if not m:
        raise UnknownName(stem)
    return _SAVEE_EMOTIONS[m.group(2)], f"savee:{m.group(1)}"


def clip_from_path(path: Path, corpus: str) -> Clip:
    stem = path.stem
    if corpus == "ravdess":
        label, speaker, gender = parse_ravdess(stem)
        return Clip(path, label, corpus, speaker, speaker, gender)
    if corpus == "cremad":
        label, speaker = parse_cremad(stem)
        return Clip(path, label, corpus, speaker, speaker)
    if corpus == "tess":
        label, speaker, word = parse_tess(stem)
        return Clip(path, label, corpus, speaker, f"tess-word:{word}", "female")
    if corpus == "savee":
        label, speaker = parse_savee(stem)
        return Clip(path, label, corpus, speaker, speaker, "male")
    raise ValueError(f"unknown corpus {corpus!r}")


def corpus_of(folder_name: str) -> str | None:
    """Top-level folder -> corpus: ``ravdess``, ``Crema``, ``Tess``, ``Savee``... (any case)."""
    name = folder_name.lower()
    for key, corpus in (("ravdess", "ravdess"), ("crema", "cremad"), ("tess", "tess"), ("savee", "savee")):
        if key in name:
            return corpus
    return None


@dataclass
class Scan:
    clips: list[Clip]
    unknown: list[Path]

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for c in self.clips:
            out.setdefault(c.corpus, Counter())[c.label] += 1
        return {k: dict(sorted(v.items())) for k, v in out.items()}


def scan(data_dir: Path, corpora: tuple[str, ...] = CORPORA) -> Scan:
    """Every audio file under each corpus folder of ``data_dir``, parsed by name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory not found: {data_dir}")
    clips: list[Clip] = []
    unknown: list[Path] = []
    for top in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        corpus = corpus_of(top.name)
        if corpus is None or corpus not in corpora:
            continue
        files = sorted(p for p in top.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
        for p in files:
            try:
                clips.append(clip_from_path(p, corpus))
            except UnknownName:
                unknown.append(p)
        log.info("scan %-8s %5d clips from %s", corpus, sum(c.corpus == corpus for c in clips), top)
    for p in unknown[:10]:
        log.warning("skipped a file whose name follows no %s rule: %s", corpus_of(p.parts[-2]) or "", p)
    if len(unknown) > 10:
        log.warning("... and %d more unrecognised file names", len(unknown) - 10)
    return Scan(clips, unknown)


def require_clips(found: Scan, data_dir: Path) -> list[Clip]:
    """The clips of a scan, or a one-line error a user can act on when there are none."""
    if not found.clips:
        raise ValueError(f"no clips of {', '.join(CORPORA)} found under {data_dir} (expected folders "
                         "named like ravdess/, Crema/, Tess/, Savee/ with the corpora's file names)")
    return found.clips

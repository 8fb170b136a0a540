"""Speaker-independent split: no speaker (for TESS, no word) in two parts.

TESS has only two speakers, both needed to learn its style of speech, so TESS is split
by *word* instead: a test word is never heard in training, in any emotion, by either
speaker. That tests generalisation to new words, not to new voices, and the model card
says so. SAVEE has four speakers (fewer in a partial copy): one is held out for test and
none for validation, so that at least two voices remain for training.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from train.corpora import Clip

PARTS = ("train", "val", "test")
NOTE = ("No speaker is in two parts; TESS (two speakers, both needed in training) is split by word "
        "instead, so its test part measures new words, not new voices.")


@dataclass(frozen=True)
class SplitConfig:
    seed: int = 20261124
    ravdess_test: int = 4  # actors, half male half female
    ravdess_val: int = 2
    cremad_test: float = 0.15  # fraction of speakers
    cremad_val: float = 0.10
    tess_test: float = 0.15  # fraction of words
    tess_val: float = 0.10
    savee_test: int = 1  # speakers
    savee_val: int = 0
    # the final refit, once every choice is made: the validation speakers are drawn as
    # always and then train too, so the test speakers stay exactly the ones the choices
    # never saw, and the model learns from every voice that is not theirs
    refit: bool = False


def _take(groups: list[str], n_test: int, n_val: int, rng: random.Random) -> dict[str, str]:
    groups = sorted(groups)
    rng.shuffle(groups)
    out = {}
    for i, g in enumerate(groups):
        out[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def assign(clips: list[Clip], config: SplitConfig = SplitConfig()) -> dict[str, str]:
    """group -> part, deterministic for a given set of groups and seed."""
    rng = random.Random(config.seed)
    by_corpus: dict[str, set[str]] = defaultdict(set)
    gender: dict[str, str] = {}
    for c in clips:
        by_corpus[c.corpus].add(c.group)
        gender[c.group] = c.gender
    parts: dict[str, str] = {}
    for corpus in sorted(by_corpus):
        groups = sorted(by_corpus[corpus])
        if corpus == "ravdess":
            for g in ("male", "female"):
                sub = [x for x in groups if gender[x] == g]
                parts.update(_take(sub, config.ravdess_test // 2, config.ravdess_val // 2, rng))
        elif corpus == "cremad":
            n = len(groups)
            parts.update(_take(groups, round(n * config.cremad_test), round(n * config.cremad_val), rng))
        elif corpus == "tess":
            n = len(groups)
            parts.update(_take(groups, round(n * config.tess_test), round(n * config.tess_val), rng))
        elif corpus == "savee":
            n_test = min(config.savee_test, max(0, len(groups) - 1))
            parts.update(_take(groups, n_test, min(config.savee_val, len(groups) - 1 - n_test), rng))
    return parts


def split(clips: list[Clip], config: SplitConfig = SplitConfig()) -> dict[str, list[Clip]]:
    parts = assign(clips, config)
    out: dict[str, list[Clip]] = {p: [] for p in PARTS}
    for c in clips:
        part = parts[c.group]
        out["train" if config.refit and part == "val" else part].append(c)
    return out


def describe(parts: dict[str, list[Clip]], config: SplitConfig, root: Path | None = None) -> dict:
    """The split as JSON: which speakers/words and which files are in each part."""
    def rel(p: Path) -> str:
        try:
            return str(p.relative_to(root)) if root else str(p)
        except ValueError:
            return str(p)

    doc: dict = {"config": asdict(config), "note": NOTE, "parts": {}}
    for name, clips in parts.items():
        groups: dict[str, list[str]] = defaultdict(list)
        for c in clips:
            if c.group not in groups[c.corpus]:
                groups[c.corpus].append(c.group)
        doc["parts"][name] = {
            "groups": {k: sorted(v) for k, v in sorted(groups.items())},
            "clips": len(clips),
            "clips_per_corpus": {k: sum(c.corpus == k for c in clips) for k in sorted({c.corpus for c in clips})},
            "files": sorted(rel(c.path) for c in clips),
        }
    return doc


def write(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=1))

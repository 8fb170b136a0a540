"""The voice each clip is judged against when the model adapts to its speaker.

A user enrols by speaking neutrally for a while; the model then reads how a segment
departs from that voice. In the corpora the enrolment is a speaker's neutral clips, and
a clip is never part of its own enrolment (a neutral clip would otherwise sit exactly at
its reference and look easier than any live segment): each neutral clip is measured
against its speaker's *other* neutral clips. One rule, used by training, cross-validation
and evaluation alike.
"""

from __future__ import annotations

import numpy as np

from train.corpora import Clip

__all__ = ["group_voices", "neutral_references"]


def _enrolments(clips: list[Clip], by: str):
    """Per group (speaker, or corpus): its rows, the rows of its enrolment (its neutral
    clips; all of its clips where it has none), and whether they are neutral ones."""
    keys = np.array([c.speaker if by == "speaker" else c.corpus for c in clips])
    neutral = np.array([c.label == "neutral" for c in clips])
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        has_neutral = bool(neutral[idx].any())
        yield key, idx, (idx[neutral[idx]] if has_neutral else idx), has_neutral


def group_voices(x: np.ndarray, clips: list[Clip], by: str = "speaker") -> dict[str, np.ndarray]:
    """Each group's voice: the mean of ``x`` (one row per clip) over its enrolment."""
    return {str(key): x[ref].mean(axis=0) for key, _, ref, _ in _enrolments(clips, by)}


def neutral_references(x: np.ndarray, clips: list[Clip], by: str = "speaker") -> np.ndarray:
    """Per clip, the mean of ``x`` (one row per clip) over the neutral clips of its
    speaker (``by="corpus"``: its corpus) other than itself; a group with no neutral clip
    falls back to all of its clips, one with a single neutral clip to that clip."""
    out = np.empty_like(x)
    for _, idx, ref, has_neutral in _enrolments(clips, by):
        total = x[ref].sum(axis=0)
        out[idx] = total / ref.size
        if has_neutral and ref.size > 1:
            out[ref] = (total - x[ref]) / (ref.size - 1)
    return out

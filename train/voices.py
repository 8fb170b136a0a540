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

__all__ = ["neutral_references"]


def neutral_references(x: np.ndarray, clips: list[Clip], by: str = "speaker") -> np.ndarray:
    """Per clip, the mean of ``x`` (one row per clip) over the neutral clips of its
    speaker (``by="corpus"``: its corpus) other than itself; a group with no neutral clip
    falls back to all of its clips, one with a single neutral clip to that clip."""
    keys = np.array([c.speaker if by == "speaker" else c.corpus for c in clips])
    neutral = np.array([c.label == "neutral" for c in clips])
    out = np.empty_like(x)
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        ref = idx[neutral[idx]] if neutral[idx].any() else idx
        total = x[ref].sum(axis=0)
        out[idx] = total / ref.size
        if neutral[idx].any() and ref.size > 1:
            out[ref] = (total - x[ref]) / (ref.size - 1)
    return out

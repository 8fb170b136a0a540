"""Batch results as tables: one row per segment (``replay --output``) and one row per
input file (``replay --summary``), as CSV or JSON lines, chosen by the file's extension.

Both are sinks of the stamped messages every other output gets (see
:class:`~serstream.pipeline.Outlet`): a segment row is a final emotion event (in JSON
lines, its very bytes, valid against the event schema; in CSV, flattened, one column
per label), and a file's row is computed from that file's final events and its last
stats message. Nothing is measured twice.

A file's label is the one with the highest *duration-weighted* mean probability over
its final segments, so a long sad stretch outweighs a short happy word; its confidence
is that mean probability.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from serstream.errors import UserError
from serstream.events import EMOTION_TOPIC, STATS_TOPIC, Message

__all__ = ["FORMATS", "SegmentRows", "FileSummaries", "check_format", "weighted_label"]

FORMATS = (".csv", ".jsonl")


def check_format(path: Path, option: str) -> str:
    """The table format ``path``'s extension names (checked before any work is done)."""
    kind = path.suffix.lower()
    if kind not in FORMATS:
        raise UserError(f"{option} {path}: the extension says the format: .csv or .jsonl")
    return kind


def _open(path: Path, option: str) -> tuple[IO[str], str]:
    kind = check_format(path, option)
    try:
        return open(path, "w", newline="" if kind == ".csv" else None, encoding="utf-8"), kind
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write ({exc.strerror})") from None


def _prob_columns(labels: Sequence[str]) -> list[str]:
    return [f"prob_{label}" for label in labels]


class _Table:
    """Rows written as they come (a long batch loses nothing if it is stopped), flushed per row."""

    def __init__(self, path: Path, option: str, columns: list[str]) -> None:
        self.path = path
        self.file, self.kind = _open(path, option)
        self.columns = columns
        self._csv = csv.DictWriter(self.file, columns, extrasaction="raise") if self.kind == ".csv" else None
        if self._csv is not None:
            self._csv.writeheader()

    def write(self, flat: dict[str, Any], raw: str | None = None) -> None:
        if self._csv is not None:
            self._csv.writerow({k: "" if v is None else v for k, v in flat.items()})
        else:
            self.file.write((raw if raw is not None else json.dumps(flat, ensure_ascii=False)) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class SegmentRows:
    """A sink: one row per final emotion event (partials are the same segment, unsettled)."""

    FIELDS = ("source", "segment", "start", "end", "label", "confidence")
    TAIL = ("model", "voice", "session", "seq", "wall_start", "wall_end")

    def __init__(self, path: Path, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self.table = _Table(path, "--output", [*self.FIELDS, *_prob_columns(labels), *self.TAIL])
        self.rows = 0

    def __call__(self, message: Message) -> None:
        p = message.payload
        if message.topic != EMOTION_TOPIC or not p["final"]:
            return
        flat = {k: p[k] for k in self.FIELDS}
        flat.update({f"prob_{lab}": p["probabilities"].get(lab) for lab in self.labels})
        flat.update({k: p[k] for k in self.TAIL})
        self.table.write(flat, raw=message.data.decode())
        self.rows += 1

    def close(self) -> None:
        self.table.close()


def weighted_label(segments: Sequence[tuple[float, dict[str, float | None]]],
                   labels: Sequence[str]) -> tuple[str, float, dict[str, float]] | None:
    """Label, confidence and mean probabilities over ``(duration, probabilities)`` pairs,
    weighted by duration; None without segments. A probability the model could not give
    (null on the wire) counts as 0 for that segment."""
    if not segments:
        return None
    total = sum(max(d, 0.0) for d, _ in segments)
    weights = [max(d, 0.0) / total if total > 0 else 1 / len(segments) for d, _ in segments]
    mean = {lab: sum(w * (probs.get(lab) or 0.0) for w, (_, probs) in zip(weights, segments, strict=True))
            for lab in labels}
    best = max(labels, key=lambda lab: mean[lab])
    return best, round(mean[best], 5), {lab: round(v, 5) for lab, v in mean.items()}


class FileSummaries:
    """A sink with a row per input file, written when the file ends (:meth:`end`)."""

    def __init__(self, path: Path, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)
        self.table = _Table(path, "--summary", ["file", "label", "confidence", *_prob_columns(labels),
                                                 "segments", "duration_s", "speech_s", "error"])
        self._segments: list[tuple[float, dict[str, float | None]]] = []
        self._duration: float | None = None

    def __call__(self, message: Message) -> None:
        p = message.payload
        if message.topic == EMOTION_TOPIC and p["final"]:
            self._segments.append((p["end"] - p["start"], p["probabilities"]))
        elif message.topic == STATS_TOPIC:
            self._duration = p["stream_s"]  # the file's last stats: all of it (or all that decoded)

    def end(self, file: str, error: str | None = None) -> None:
        """The row for ``file``, from the messages since the previous one ended."""
        result = weighted_label(self._segments, self.labels)
        label, confidence, probs = result if result else (None, None, {})
        row = {"file": file, "label": label, "confidence": confidence,
               "segments": len(self._segments), "duration_s": self._duration,
               "speech_s": round(sum(d for d, _ in self._segments), 4), "error": error}
        if self.table.kind == ".csv":
            flat = {**row, **{f"prob_{lab}": probs.get(lab) for lab in self.labels}}
            self.table.write(flat)
        else:
            row["probabilities"] = probs or None
            self.table.write(row)
        self._segments, self._duration = [], None

    def close(self) -> None:
        self.table.close()

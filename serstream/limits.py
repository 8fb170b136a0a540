"""Numbers from outside, checked once at the boundary.

Every setting a user (a flag) or a model file (its metadata) can give is typed and
bounded where it enters: a frozen configuration dataclass declares each number with
:func:`bounded`, and :func:`check` (called from its ``__post_init__``) refuses a value
of the wrong type or out of range with the reason in one line. Without that, a
``--hwm 99999999999`` reached libzmq as an OverflowError, a ``max_speech_ms`` of 1e10
asked for hundreds of GiB, and ``160.5`` or ``true`` passed for a frame length. The
same declarations give ``--help`` its stated limits (:func:`limits_text`), so the
documented range is the enforced one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Bound", "bounded", "check", "problems", "bound_of", "limits_text", "is_int", "is_number", "MAX_THREADS", "THREADS", "usable_cpus", "strict_fields"]



def usable_cpus() -> int:
    """The CPUs this process may run on: a container or ``taskset`` can allow fewer than
    the machine has, and threads beyond those only take turns."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity outside Linux
        return max(1, os.cpu_count() or 1)


MAX_THREADS = usable_cpus()  # more ONNX Runtime threads than CPUs only adds switching


def is_int(v: Any) -> bool:
    """An integer, and not a bool (JSON's ``true`` is Python's 1)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """An int or a float, and not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Bound:
    """The type and closed range ``[lo, hi]`` a number must have (``optional``: None too)."""

    lo: float
    hi: float
    unit: str = ""
    integer: bool = True
    optional: bool = False

    def problem(self, name: str, value: Any) -> str | None:
        """Why ``value`` is not acceptable for ``name``, or None."""
        if value is None and self.optional:
            return None
        if self.integer and not is_int(value):
            return f"{name} must be an integer, got {value!r}"
        if not self.integer and (not is_number(value) or not math.isfinite(value)):
            return f"{name} must be a finite number, got {value!r}"
        if not self.lo <= value <= self.hi:
            return f"{name} must be in [{_num(self.lo)}, {_num(self.hi)}]{self._unit}, got {_num(value)}"
        return None

    @property
    def _unit(self) -> str:
        return f" {self.unit}" if self.unit else ""

    def text(self) -> str:
        """The range as ``--help`` states it: ``10 to 10000 ms``."""
        return f"{_num(self.lo)} to {_num(self.hi)}{self._unit}"


THREADS = Bound(1, MAX_THREADS, "(the CPUs here)")  # ONNX Runtime intra-op threads, flag and API alike


def _num(v: float) -> str:
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else f"{v:g}"
    return str(v)


def bounded(default: Any, lo: float, hi: float, unit: str = "", *, integer: bool | None = None,
            optional: bool = False) -> Any:
    """A dataclass field holding a number in ``[lo, hi]`` (an int unless ``default`` is a
    float or ``integer=False``)."""
    if integer is None:
        integer = not isinstance(default, float)
    return field(default=default, metadata={"bound": Bound(lo, hi, unit, integer, optional)})


def problems(obj: Any) -> list[str]:
    """Every bounded field of dataclass ``obj`` that is out of type or range."""
    out = []
    for f in fields(obj):
        bound = f.metadata.get("bound")
        if bound is not None and (why := bound.problem(f.name, getattr(obj, f.name))) is not None:
            out.append(why)
    return out


def check(obj: Any) -> None:
    """Raise ValueError naming every bounded field of ``obj`` that is out of range."""
    found = problems(obj)
    if found:
        raise ValueError("; ".join(found))


def strict_fields(cls: type, data: Any, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """``data`` as keyword arguments for dataclass ``cls``, read from a model file or a
    config: an object whose every key is a field. An unknown key is a setting this code
    does not have, refused rather than ignored; a missing one takes its default."""
    if not isinstance(data, dict):
        raise error(f"{what} must be an object, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise error(f"unknown {what} {unknown}")
    return data


def bound_of(cls: type, name: str) -> Bound:
    for f in fields(cls):
        if f.name == name:
            return f.metadata["bound"]
    raise KeyError(name)


def limits_text(cls: type, name: str) -> str:
    """``cls.name``'s range as ``--help`` states it."""
    return bound_of(cls, name).text()

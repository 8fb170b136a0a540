"""``numba.njit`` with its on-disk cache where numba can write one, without it where it cannot.

The cache turns a few seconds of compiling into a fraction of one at every start. But
numba refuses to even *define* a cached function when it finds nowhere to write
(``RuntimeError: cannot cache function``): a package installed read-only, under a
read-only home, with an uncreatable ``NUMBA_CACHE_DIR``, as on a locked-down server or
in a container. The daemon must start there too: each kernel is then compiled without
the cache, and that is said once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numba

__all__ = ["njit"]

log = logging.getLogger("serstream")

_said = False


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(cache=True, **options)``, or without the cache if numba cannot keep one."""

    def decorate(func: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError as exc:  # numba's "cannot cache function ...: no locator available"
            _say_once(exc)
            return numba.njit(cache=False, **options)(func)

    return decorate


def _say_once(exc: Exception) -> None:
    global _said
    if not _said:
        _said = True
        log.warning("numba cannot write its compilation cache here (%s; set NUMBA_CACHE_DIR to a "
                    "writable folder to keep one): the feature kernels are compiled at every start, "
                    "which takes a few seconds", str(exc).split(":", 1)[-1].strip())

"""Helpers for tests that run the real ``serstream`` command in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def serstream(*args: str, timeout: float = 60, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "serstream", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}, **kw,
    )


def spawn(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "serstream", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def assert_one_line_error(stderr: str, *needles: str) -> None:
    """The user sees a single error line naming the problem, never a traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if "error" in ln.lower()]
    assert errors, f"no error line in: {stderr!r}"
    joined = "\n".join(errors)
    for n in needles:
        assert n.lower() in joined.lower(), f"{n!r} not in {joined!r}"


def collect(sub, proc: subprocess.Popen, limit: float = 120) -> list[dict]:
    """Every event a subscriber gets until the publishing process has exited (and what
    was still in flight), instead of waiting out a timeout after the last one."""
    import time

    got: list[dict] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ev = sub.recv(timeout=0.2)
        if ev is not None:
            got.append(ev)
        elif proc.poll() is not None:
            return got + list(sub.events(timeout=0.5))
    raise AssertionError(f"publisher still running after {limit} s")

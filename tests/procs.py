"""Helpers for tests that run the real ``serstream`` command in a subprocess."""

from __future__ import annotations

import os
import signal
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


def permissions_apply() -> list[str]:
    """A command prefix under which file permissions hold for this user: as root (a CI
    container), the capabilities that override them are dropped, so that an unreadable
    or read-only file is what it is for everyone else."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def serstream(*args: str, timeout: float = 60, env: dict | None = None, prefix: list[str] | None = None,
              **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*(prefix or []), sys.executable, "-m", "serstream", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}, **kw,
    )


_started: list[subprocess.Popen] = []


def track(proc: subprocess.Popen) -> subprocess.Popen:
    """Remember a child so that :func:`reap` stops it if the test did not."""
    _started.append(proc)
    return proc


def reap() -> list[str]:
    """Stop every tracked child still running (SIGINT, then SIGKILL after 30 s), newest
    first; called after each test (conftest), so a failed test leaves no daemon behind.
    Returns what had to be stopped."""
    leftovers = []
    while _started:
        proc = _started.pop()
        if proc.poll() is not None:
            continue
        leftovers.append(" ".join(map(str, proc.args)))
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    return leftovers


def spawn(*args: str, env: dict | None = None) -> subprocess.Popen:
    return track(subprocess.Popen(
        [sys.executable, "-m", "serstream", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, **(env or {})},
    ))


class Lines:
    """A child's stderr read line by line on a thread, so a test can wait for the daemon
    to say it reached a state (no sleeping and hoping) and read everything afterwards."""

    def __init__(self, stream) -> None:
        import threading

        self.lines: list[str] = []
        self.arrived: list[float] = []  # time.monotonic() at which each line was read
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        import time

        for line in stream:
            with self._cond:
                self.lines.append(line)
                self.arrived.append(time.monotonic())
                self._cond.notify_all()

    def wait_for(self, needle: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(needle in ln for ln in self.lines), timeout)

    def text(self) -> str:
        """Everything, once the stream has ended."""
        self._thread.join(timeout=10)
        return "".join(self.lines)

    def since(self, t: float) -> list[str]:
        """The lines read after monotonic time ``t`` (call :meth:`text` first to have them all)."""
        with self._cond:
            return [ln for ln, at in zip(self.lines, self.arrived, strict=True) if at > t]

    def text_so_far(self) -> str:
        with self._cond:
            return "".join(self.lines)


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


def hearing(sub, timeout: float = 60, after: int = 0, seen: list | None = None) -> dict:
    """The first stats message showing that a ``run`` daemon's microphone delivers audio
    (frames captured beyond ``after``): only then is a clip played into it heard. The
    device reads "ok" as soon as it is opened, and under load PortAudio can take a few
    seconds more to deliver its first block; a clip played meanwhile is lost. Messages
    received on the way are appended to ``seen``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = sub.recv(timeout=0.5)
        if ev is None:
            continue
        if seen is not None:
            seen.append(ev)
        if ev["topic"] == "stats" and ev["device"] == "ok" and ev["frames_captured"] > after:
            return ev
    raise AssertionError(f"the daemon heard nothing from its microphone for {timeout} s")

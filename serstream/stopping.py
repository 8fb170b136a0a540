"""Stopping on a signal, on time, whatever the daemon is doing.

SIGINT, SIGTERM and SIGHUP all mean "finish what is in progress and exit 0", and a
service manager that sent one expects the process gone within seconds (then it sends
SIGKILL and the last segment is lost). Python runs a signal handler only between two
bytecodes of the main thread, so a handler alone is not enough: while the main thread
sits in a long ONNX Runtime call, the handler waits for it. The signal itself, though,
is written at once by the interpreter's C-level handler to a *wakeup fd*; a small
watcher thread reads it there and acts immediately:

1. first signal: the stop event is set (every loop checks it) and the ``on_stop``
   hooks run at once, with ``final=False``: the pipeline abandons a partial result it
   is computing (the segment's final is about to replace it);
2. ``FINAL_BUDGET_S`` later, hooks run again with ``final=True``: whatever
   classification is still running is cut short, so the exit is not held hostage by a
   slow model;
3. ``STOP_BUDGET_S`` after the signal, if the process is still there (a start-up that
   cannot be interrupted, a stuck device), it exits 0 at once, saying so;

and a second signal exits at once with 130, as a second Ctrl-C always has.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

__all__ = ["STOP_SIGNALS", "STOP_BUDGET_S", "FINAL_BUDGET_S", "Stopper"]

log = logging.getLogger("serstream")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_BUDGET_S = 2.0  # the promise: a stop signal ends any run within this
FINAL_BUDGET_S = 1.2  # the closing final's share of it; the rest is for closing sockets and exiting
_HARD_EXIT_S = STOP_BUDGET_S - 0.15  # leave the kernel and the service manager a margin

StopHook = Callable[[bool], None]


class Stopper:
    """The process's answer to stop signals (see the module docstring).

    ``what`` says what the first signal will do, for its log line; each command sets
    it. Installed before the arguments are even parsed, so a signal at any moment of
    start-up is handled like any other, never a traceback.
    """

    def __init__(self, what: str = "exiting", signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
        self.what = what
        self.signals = signals
        self.event = threading.Event()
        self._said = threading.Event()  # the signal's log line is written
        self.signalled_at: float | None = None
        self._hooks: list[StopHook] = []
        self._lock = threading.Lock()
        self._exit_code = 0

    # ------------------------------------------------------------------ set-up
    def install(self) -> None:
        """Route the stop signals to the watcher thread (main thread only)."""
        r, w = os.pipe()
        os.set_blocking(w, False)
        signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        for sig in self.signals:
            # the Python-level handler has nothing left to do, but it must exist: it is
            # what keeps the C-level handler (which writes the wakeup fd) installed, and
            # SIGINT from raising KeyboardInterrupt in the middle of anything
            signal.signal(sig, _ignore)
        threading.Thread(target=self._watch, args=(r,), name="stop-watcher", daemon=True).start()

    def on_stop(self, hook: StopHook) -> None:
        """Call ``hook(False)`` at the first signal and ``hook(True)`` when the final's
        time is up (from the watcher thread: a hook only sets flags)."""
        with self._lock:
            self._hooks.append(hook)

    def remove(self, hook: StopHook) -> None:
        with self._lock:
            if hook in self._hooks:
                self._hooks.remove(hook)

    @property
    def stopping(self) -> bool:
        return self.event.is_set()

    def finished(self, exit_code: int) -> None:
        """The command returned ``exit_code``: should the process then still be held
        up past the budget (interpreter teardown), it leaves with that code, not 0."""
        self._exit_code = exit_code
        if self.signalled_at is not None:  # the watcher's "X received" line is said before the exit
            self._said.wait(timeout=0.5)

    # ------------------------------------------------------------------ watcher
    def _watch(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 64)
            except InterruptedError:
                continue
            for signum in data:
                if signum in self.signals:
                    self._signalled(signum)

    def _signalled(self, signum: int) -> None:
        if self.event.is_set():
            os.write(2, b"serstream: second signal, exiting now\n")
            os._exit(130)
        self.signalled_at = time.monotonic()
        self.event.set()
        # deadlines and hooks before the log line: logging takes a lock that a main
        # thread blocked on a full stderr could hold
        threading.Thread(target=self._deadlines, name="stop-deadline", daemon=True).start()
        self._run_hooks(final=False)
        log.info("%s received: %s", signal.Signals(signum).name, self.what)
        self._said.set()

    def _deadlines(self) -> None:
        assert self.signalled_at is not None
        time.sleep(max(0.0, self.signalled_at + FINAL_BUDGET_S - time.monotonic()))
        self._run_hooks(final=True)
        time.sleep(max(0.0, self.signalled_at + _HARD_EXIT_S - time.monotonic()))
        # still here: something could not be interrupted (a start-up step, a device
        # that will not close). The promise is an exit within STOP_BUDGET_S.
        os.write(2, f"serstream: WARNING: could not finish within {STOP_BUDGET_S:.0f} s of the stop "
                    "signal: exiting now\n".encode())
        os._exit(self._exit_code)

    def _run_hooks(self, final: bool) -> None:
        with self._lock:
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook(final)
            except Exception as exc:  # a hook must not keep the others from running
                log.debug("stop hook %r failed: %s", hook, exc)


def _ignore(signum: int, frame: object) -> None:
    """The watcher thread has already acted on this signal (see :class:`Stopper`)."""

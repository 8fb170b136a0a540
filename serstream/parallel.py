"""``replay --jobs N``: files scored in N worker processes, results in input order.

Each worker loads its own model session (ONNX Runtime sessions are not shared across
processes) and runs the same :class:`~serstream.pipeline.Pipeline` on one file at a
time. It does not stamp: it sends back the message *bodies*, and the parent stamps them
with its one :class:`~serstream.events.Stamper`, file after file in the order given, so
subscribers, ``--json``, ``--output`` and ``--summary`` see one session with unbroken
``seq`` numbers, exactly as from one process. Stats bodies get the parent's running
totals (a worker's count only its file) and its publisher's counters.

Workers are started with ``spawn`` (a fork would copy the parent's ZeroMQ and ONNX
Runtime threads in an undefined state) and ignore SIGINT: the parent decides. On a stop,
files not yet started are dropped and the ones in progress are finished and emitted.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from serstream.errors import AudioFileError
from serstream.events import EmotionEvent, Stats
from serstream.pipeline import Counters, Outlet, PipelineConfig
from serstream.replay import ReplayConfig

__all__ = ["FileResult", "score_files", "Restamper"]


@dataclass(frozen=True)
class FileResult:
    """One file's bodies, in the order its pipeline produced them, and its error if any."""

    index: int
    path: Path
    bodies: list[EmotionEvent | Stats]
    error: str | None

    @property
    def duration_s(self) -> float:
        stats = [b for b in self.bodies if isinstance(b, Stats)]
        return stats[-1].stream_s if stats else 0.0


class _Collect(Outlet):
    """A worker's outlet: keeps bodies for the parent to stamp."""

    def __init__(self) -> None:
        super().__init__(None)
        self.bodies: list[EmotionEvent | Stats] = []

    def send(self, body: EmotionEvent | Stats) -> None:
        self.bodies.append(body)


_worker: dict = {}


def _init(model_path: str, threads: int, config: PipelineConfig, replay: ReplayConfig) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from serstream.model import EmotionModel

    model = EmotionModel(model_path, threads=threads)
    model.warmup()
    _worker.update(model=model, config=config, replay=replay)


def _score(index: int, path: Path) -> FileResult:
    from serstream.pipeline import Pipeline
    from serstream.replay import FileSource

    collect = _Collect()
    pipeline = Pipeline(_worker["model"], None, _worker["config"], outlet=collect)
    try:
        source = FileSource(path, sr=pipeline.sr, config=_worker["replay"])
    except AudioFileError as exc:
        return FileResult(index, path, [], str(exc))
    try:
        pipeline.run(source, threading.Event())
    except Exception as exc:  # one bad file must not end the batch
        return FileResult(index, path, collect.bodies, f"{path}: unexpected {type(exc).__name__}: {exc}")
    return FileResult(index, path, collect.bodies, None if source.error is None else str(source.error))


def score_files(files: Sequence[Path], jobs: int, model_path: Path, threads: int, config: PipelineConfig,
                replay: ReplayConfig, stop: threading.Event,
                on_done: Callable[[FileResult], None] | None = None) -> Iterator[FileResult]:
    """Results in the order of ``files``; ``on_done`` sees each as soon as it is done
    (any order: for progress). At most ``8 * jobs`` files are in flight or waiting for
    an earlier one, so a long file holds back a bounded number of results."""
    window = max(8 * jobs, 16)
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init,
                                initargs=(str(model_path), threads, config, replay)) as pool:
        todo = iter(enumerate(files))
        running: set[cf.Future] = set()
        ready: dict[int, FileResult] = {}
        next_out = 0
        while True:
            while not stop.is_set() and len(running) + len(ready) < window:
                item = next(todo, None)
                if item is None:
                    break
                running.add(pool.submit(_score, *item))
            if not running:
                break
            done, running = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                result = fut.result()
                if on_done is not None:
                    on_done(result)
                ready[result.index] = result
            while next_out in ready:
                yield ready.pop(next_out)
                next_out += 1


class Restamper:
    """Turns the bodies of files scored apart into one stream: cumulative counters in
    stats (as one pipeline running through the files would report them)."""

    def __init__(self, outlet: Outlet, uptime: Callable[[], float]) -> None:
        self.outlet = outlet
        self.uptime = uptime
        self.counters = Counters()

    def send_file(self, result: FileResult) -> None:
        last: Stats | None = None
        base = self.counters
        publisher = self.outlet.publisher
        for body in result.bodies:
            if isinstance(body, Stats):
                last = body
                body = replace(body, uptime_s=round(self.uptime(), 3),
                               segments=base.segments + body.segments, partials=base.partials + body.partials,
                               events=base.events + body.events, errors=base.errors + body.errors,
                               dropped=publisher.dropped if publisher else 0,
                               subscriptions=publisher.subscriptions if publisher else 0)
            self.outlet.send(body)
        if last is not None:
            self.counters = Counters(base.segments + last.segments, base.partials + last.partials,
                                     base.events + last.events, base.errors + last.errors)

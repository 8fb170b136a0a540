"""``replay --jobs N``: files scored in N worker processes, results in input order.

Each worker loads its own model session (ONNX Runtime sessions are not shared across
processes) and runs the same :class:`~serstream.pipeline.Pipeline` on one file at a
time. It does not stamp: it sends back the message *bodies*, and the parent stamps them
with its one :class:`~serstream.events.Stamper`, file after file in the order given, so
subscribers, ``--json``, ``--output`` and ``--summary`` see one session with unbroken
``seq`` numbers, exactly as from one process. Stats bodies get the parent's running
totals (a worker's count only its file) and its publisher's counters.

Workers are started with ``spawn`` (a fork would copy the parent's ZeroMQ and ONNX
Runtime threads in an undefined state). They ignore SIGINT and SIGHUP (a terminal sends
those to the whole process group: the parent decides) and stop on SIGTERM, as a
daemon does (:mod:`serstream.stopping`): the file in progress ends at once, its open
segment closed with a final, the audio left unprocessed counted. On a stop the parent
starts no other file and sends each worker SIGTERM (a service manager may already have:
it signals the whole group), so ``--jobs`` stops within the same 2 s as one process.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from serstream.errors import AudioFileError
from serstream.events import EmotionEvent, Stats
from serstream.pipeline import Counters, Outlet, PipelineConfig
from serstream.publish import peer_counts
from serstream.replay import ReplayConfig
from serstream.stopping import Stopper

__all__ = ["FileResult", "score_files", "Restamper"]


@dataclass(frozen=True)
class FileResult:
    """One file's bodies, in the order its pipeline produced them, and its error if any."""

    index: int
    path: Path
    bodies: list[EmotionEvent | Stats]
    error: str | None
    stopped: bool = False  # the stop came while this file was being scored (not after it was done)

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


def _init(model_path: str, threads: int, config: PipelineConfig, replay: ReplayConfig,
          voice: tuple[np.ndarray, str] | None) -> None:
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    stopper = Stopper("finishing this worker's file", signals=(signal.SIGTERM,))
    stopper.install()
    from serstream.model import EmotionModel

    model = EmotionModel(model_path, threads=threads)
    if voice is not None:  # checked against the model in the parent
        model.use_voice(*voice)
    model.warmup()
    _worker.update(model=model, config=config, replay=replay, stopper=stopper)


def _score(index: int, path: Path) -> FileResult:
    from serstream.pipeline import Pipeline
    from serstream.replay import FileSource

    collect = _Collect()
    pipeline = Pipeline(_worker["model"], None, _worker["config"], outlet=collect)
    stopper: Stopper = _worker["stopper"]
    stopper.on_stop(pipeline.cut_short)
    try:
        source = FileSource(path, sr=pipeline.sr, config=_worker["replay"])
        pipeline.run(source, stopper.event)
    except AudioFileError as exc:
        return FileResult(index, path, [], str(exc))
    except Exception as exc:  # one bad file must not end the batch
        return FileResult(index, path, collect.bodies, f"{path}: unexpected {type(exc).__name__}: {exc}")
    finally:
        stopper.remove(pipeline.cut_short)
    return FileResult(index, path, collect.bodies, None if source.error is None else str(source.error),
                      stopped=stopper.event.is_set())


def score_files(files: Sequence[Path], jobs: int, model_path: Path, threads: int, config: PipelineConfig,
                replay: ReplayConfig, stop: threading.Event,
                on_done: Callable[[FileResult], None] | None = None,
                voice: tuple[np.ndarray, str] | None = None) -> Iterator[FileResult]:
    """Results in the order of ``files``; ``on_done`` sees each as soon as it is done
    (any order: for progress). At most ``8 * jobs`` files are in flight or waiting for
    an earlier one, so a long file holds back a bounded number of results."""
    window = max(8 * jobs, 16)
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init,
                                initargs=(str(model_path), threads, config, replay, voice)) as pool:
        todo = iter(enumerate(files))
        running: dict[cf.Future, tuple[int, Path]] = {}
        ready: dict[int, FileResult] = {}
        next_out = 0
        told = False
        while True:
            if stop.is_set() and not told:
                told = True  # files waiting stay unscored; each worker ends its file at once
                for fut in running:
                    fut.cancel()
                for worker in multiprocessing.active_children():
                    worker.terminate()
            while not stop.is_set() and len(running) + len(ready) < window:
                item = next(todo, None)
                if item is None:
                    break
                running[pool.submit(_score, *item)] = item
            if not running:
                break
            done, _ = cf.wait(running, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                index, path = running.pop(fut)
                if fut.cancelled():
                    continue
                try:
                    result = fut.result()
                except Exception as exc:  # its worker died: stopped while it was still starting, or broken
                    why = None if stop.is_set() else f"{path}: its worker process died ({type(exc).__name__})"
                    result = FileResult(index, path, [], why)
                if on_done is not None:
                    on_done(result)
                ready[result.index] = result
            while next_out in ready:
                yield ready.pop(next_out)
                next_out += 1
        for index in sorted(ready):  # stopped: after a cancelled file, the ones that did finish
            yield ready[index]


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
                               unprocessed_s=round(base.unprocessed_s + body.unprocessed_s, 3),
                               **peer_counts(publisher))
            self.outlet.send(body)
        if last is not None:
            self.counters = Counters(base.segments + last.segments, base.partials + last.partials,
                                     base.events + last.events, base.errors + last.errors,
                                     round(base.unprocessed_s + last.unprocessed_s, 3))

"""End-to-end figures with real processes: latency, partials, throughput, memory,
start-up and how many real-time streams one machine carries."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import DATA, ROOT, free_endpoint, joined, pct, rss_kb, spawn, speech_clips


def _collect(sub, proc) -> list[dict]:
    """Every event until the replay process has exited, stamped on receipt."""
    got = []
    while True:
        ev = sub.recv(timeout=0.5)
        if ev is not None:
            ev["received"] = time.time()
            got.append(ev)
        elif proc.poll() is not None:
            got += [{**e, "received": time.time()} for e in sub.events(timeout=0.5)]
            return got


def latency(model: Path, quick: bool) -> list[str]:
    from serstream.client import Subscriber

    n = 8 if quick else 30
    with tempfile.TemporaryDirectory() as d:
        path, duration = joined(speech_clips(n, seed=1), 1.5, Path(d) / "segments.wav")
        ep = free_endpoint()
        with Subscriber(ep, topics=("emotion",)) as sub:
            proc = spawn("replay", "--model", model, "--bind", ep, "--speed", "1", "--quiet",
                         "--partial-interval-ms", "0", "--wait-subscriber", "30", path)
            finals = _collect(sub, proc)
    # arrival of the deciding sample = send time - processing; last speech sample came
    # vad_delay earlier (the hangover the VAD waits by design)
    hang = [e["vad_delay_ms"] for e in finals]
    proc_ms = [(e["received"] - e["published_at"]) * 1e3 + e["processing_ms"] for e in finals]
    total = [h + p for h, p in zip(hang, proc_ms, strict=True)]
    feats = [e["features_ms"] for e in finals]
    infer = [e["inference_ms"] for e in finals]
    rows = ["| per final segment (ms) | p50 | p95 | p99 | max |", "|---|---|---|---|---|"]
    for name, v in (("total: last speech sample → subscriber", total), ("VAD hangover (by design)", hang),
                    ("**processing + transport**", proc_ms), ("  of which features", feats),
                    ("  of which inference", infer)):
        rows.append(f"| {name} | {pct(v, 50):.1f} | {pct(v, 95):.1f} | {pct(v, 99):.1f} | {max(v):.1f} |")
    rows += ["", f"{len(finals)} segments from {n} random corpus clips separated by 1.5 s of silence "
             f"({duration:.0f} s, replayed at real-time pace into a subscriber in another process). "
             f"Segments of {np.mean([e['end'] - e['start'] for e in finals]):.1f} s on average. "
             "Targets: the Whisper model p99 ≤ 60 ms per 3 s segment (features + inference); "
             "the fast MFCC model p99 ≤ 20 ms."]
    return rows


def partials(model: Path, quick: bool) -> list[str]:
    from serstream.client import Subscriber

    with tempfile.TemporaryDirectory() as d:
        path, duration = joined(speech_clips(6 if quick else 10, seed=2), 0.0, Path(d) / "long.wav", trimmed=True)
        ep = free_endpoint()
        with Subscriber(ep, topics=("emotion",)) as sub:
            proc = spawn("replay", "--model", model, "--bind", ep, "--speed", "1", "--quiet",
                         "--partial-interval-ms", "1000", "--max-speech-ms", "60000",
                         "--hangover-ms", "900", "--wait-subscriber", "30", path)
            got = _collect(sub, proc)
    seg0 = [e for e in got if e["segment"] == 0 and not e["final"]]
    gaps = np.diff([e["received"] for e in seg0]) * 1e3 if len(seg0) > 1 else np.array([np.nan])
    stream_gaps = np.diff([e["end"] for e in seg0]) * 1e3 if len(seg0) > 1 else np.array([np.nan])
    return [
        "| partial results, --partial-interval-ms 1000 | value |", "|---|---|",
        f"| partials in the first segment | {len(seg0)} |",
        f"| interval in stream time (ms), median / max | {np.median(stream_gaps):.0f} / {np.max(stream_gaps):.0f} |",
        f"| interval at the subscriber (ms), median / max | {np.median(gaps):.0f} / {np.max(gaps):.0f} |",
        "", f"{duration:.1f} s of speech with the pauses cut out (VAD-trimmed clips back to back).",
    ]


_THROUGHPUT = r"""
import os, sys, time, threading, json
os.sched_setaffinity(0, {0})
from pathlib import Path
import soundfile as sf
from serstream.model import EmotionModel
from serstream.pipeline import Pipeline, PipelineConfig
from serstream.replay import FileSource, ReplayConfig
from serstream.decode import load_audio
files = [Path(p) for p in sys.stdin.read().split("\n") if p]
mode = sys.argv[1]
t0 = time.perf_counter()
audio = 0.0
if mode.startswith("pipeline"):
    from serstream.vad import VadConfig
    model = EmotionModel(sys.argv[2]); model.warmup()
    from dataclasses import replace
    vad = model.meta.vad or VadConfig()
    vad = replace(vad, partial_interval_ms=0) if mode == "pipeline-nopartials" else vad
    cost = {"features": 0.0, "inference": 0.0}
    def sink(message):
        if message.topic == "emotion":
            cost["features"] += message.payload["features_ms"] / 1000
            cost["inference"] += message.payload["inference_ms"] / 1000
    pipe = Pipeline(model, None, PipelineConfig(vad=vad, stats_interval=3600), sinks=[sink])
    stop = threading.Event()
    t0 = time.perf_counter()
    for f in files:
        src = FileSource(f, config=ReplayConfig(speed=0))
        pipe.run(src, stop)
        audio += src.ring.frames_written / 16000
    print(json.dumps({"wall": time.perf_counter() - t0, "audio": audio, "files": len(files),
                      "segments": pipe.counters.segments, "events": pipe.counters.events, **cost}))
else:
    for f in files:
        audio += load_audio(f).duration
    print(json.dumps({"wall": time.perf_counter() - t0, "audio": audio, "files": len(files)}))
"""


def throughput(model: Path, quick: bool) -> list[str]:
    import json

    files = sorted(p for p in DATA.rglob("*") if p.suffix in (".flac", ".ogg"))
    # every k-th file of the sorted listing, all four corpora: the Whisper model at ~50x
    # would take most of an hour per mode over all of them
    files = files[:: max(1, len(files) // (300 if quick else 1200))]
    listing = "\n".join(map(str, files))
    res = {}
    for mode in ("decode", "pipeline", "pipeline-nopartials"):
        out = subprocess.run([sys.executable, "-c", _THROUGHPUT, mode, str(model)], input=listing,
                             capture_output=True, text=True, cwd=ROOT, check=True)
        res[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    p, dcd, q = res["pipeline"], res["decode"], res["pipeline-nopartials"]
    return [
        "| one core (taskset to CPU 0) | files | audio | wall | × real time | clips/s |",
        "|---|---|---|---|---|---|",
        f"| decode + resample only (floor) | {dcd['files']} | {dcd['audio'] / 3600:.2f} h | {dcd['wall']:.1f} s | "
        f"{dcd['audio'] / dcd['wall']:,.0f}× | {dcd['files'] / dcd['wall']:,.0f} |",
        f"| **full pipeline** (ring, VAD, features, ONNX) | {p['files']} | {p['audio'] / 3600:.2f} h | {p['wall']:.1f} s | "
        f"**{p['audio'] / p['wall']:,.0f}×** | {p['files'] / p['wall']:,.0f} |",
        f"| full pipeline, `--partial-interval-ms 0` (batch scoring) | {q['files']} | {q['audio'] / 3600:.2f} h | "
        f"{q['wall']:.1f} s | **{q['audio'] / q['wall']:,.0f}×** | {q['files'] / q['wall']:,.0f} |",
        "", "| where the full pipeline's time goes | default (with partials) | batch scoring |",
        "|---|---|---|",
        f"| model inference | {p['inference'] / p['wall']:.0%} | {q['inference'] / q['wall']:.0%} |",
        f"| features | {p['features'] / p['wall']:.0%} | {q['features'] / q['wall']:.0%} |",
        f"| decoding (the floor above, same files) | {dcd['wall'] / p['wall']:.0%} | {dcd['wall'] / q['wall']:.0%} |",
        f"| the rest (ring, VAD, framing, events) | {max(0.0, 1 - (p['inference'] + p['features'] + dcd['wall']) / p['wall']):.0%} | "
        f"{max(0.0, 1 - (q['inference'] + q['features'] + dcd['wall']) / q['wall']):.0%} |",
        "", f"`replay --speed 0` path in-process (Pipeline + FileSource, no socket), {p['segments']} segments, "
        f"{p['events']} events with partials ({q['events']} without). Target for the Whisper model: ≥ 50× real time.",
    ]


def memory(model: Path, quick: bool) -> list[str]:
    """RSS of a replay at 60x real time, so stream minutes map onto wall seconds."""
    import threading

    hours, speed = (0.25, 60.0) if quick else (1.0, 60.0)
    with tempfile.TemporaryDirectory() as d:
        unit, dur = joined(speech_clips(12, seed=3), 1.0, Path(d) / "unit.flac")
        repeats = int(np.ceil(hours * 3600 / dur))
        proc = spawn("replay", "--model", model, "--no-publish", "--quiet", "--speed", speed, *([unit] * repeats))
        ready: list[float] = []

        def watch() -> None:
            for line in proc.stderr:
                if "INFO: model" in line and not ready:
                    ready.append(time.monotonic())

        threading.Thread(target=watch, daemon=True).start()
        samples = []
        while proc.poll() is None:
            r = rss_kb(proc.pid)
            if r:
                samples.append((time.monotonic(), r))
            time.sleep(0.25)
        peak_kb = max(r for _, r in samples)
    t_ready = ready[0] if ready else samples[0][0]
    minute = t_ready + 60.0 / speed  # wall time at which the first stream minute is done
    after_first = next(r for t, r in samples if t >= minute)
    end_kb = samples[-1][1]
    base = subprocess.run([sys.executable, "-c", "import numpy, numba, onnxruntime, zmq, soundfile, soxr, webrtcvad;"
                           "print(open('/proc/self/status').read())"], capture_output=True, text=True).stdout
    base_kb = int(next(ln for ln in base.splitlines() if ln.startswith("VmRSS")).split()[1])
    return [
        "| memory | value |", "|---|---|",
        f"| stream replayed | {repeats * dur / 3600:.2f} h of audio at {speed:g}× real time |",
        f"| RSS of bare imports (reference) | {base_kb / 1024:.0f} MB |",
        f"| **peak RSS of the daemon** | **{peak_kb / 1024:.0f} MB** |",
        f"| RSS after the first minute of stream | {after_first / 1024:.1f} MB |",
        f"| RSS at the end | {end_kb / 1024:.1f} MB |",
        f"| **growth** | **{(end_kb - after_first) / 1024:+.1f} MB** |",
        "", "Targets: peak ≤ 250 MB, growth ≤ 5 MB.",
    ]


def startup(model: Path, quick: bool) -> list[str]:
    times = []
    for _ in range(3 if quick else 7):
        ep = free_endpoint()
        t0 = time.monotonic()
        proc = spawn("replay", "--model", model, "--bind", ep, "--wait-subscriber", "30",
                     ROOT / "examples" / "angry_cremad_1001_DFA_ANG_XX.wav")
        for line in proc.stderr:
            if "publishing on" in line:
                times.append(time.monotonic() - t0)
                break
        proc.kill()
        proc.wait()
    ref = []
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", "import numpy, numba, onnxruntime, zmq"], check=True)
        ref.append(time.monotonic() - t0)
    return [
        "| start-up, warm JIT cache | median | max |", "|---|---|---|",
        f"| **launch → ready** (model loaded, JIT kernels loaded and run, socket bound) | "
        f"**{np.median(times):.2f} s** | {max(times):.2f} s |",
        f"| reference: `python -c 'import numpy, numba, onnxruntime, zmq'` | {np.median(ref):.2f} s | {max(ref):.2f} s |",
        "", "Target: ≤ 2 s.",
    ]


def scale(model: Path, quick: bool) -> list[str]:
    """N replay processes at real-time pace at once. Each event says how long its
    deciding sample waited before it was published (processing_ms); a stream that falls
    behind real time shows it there, growing. Keeps up: no event more than 250 ms late."""
    import json

    with tempfile.TemporaryDirectory() as d:
        path, dur = joined(speech_clips(5, seed=4), 0.8, Path(d) / "stream.wav")
        rows = ["| concurrent streams (one process each, real-time pace) | events | p99 processing | "
                "worst processing | keeps up |", "|---|---|---|---|---|"]
        best = 0
        for n in ((1, 4, 8) if quick else (1, 4, 8, 16, 24, 32, 48)):
            procs = [spawn("replay", "--model", model, "--no-publish", "--json", "--speed", "1", path)
                     for _ in range(n)]
            late = []
            for p in procs:
                out, _ = p.communicate(timeout=dur * 4 + 60)
                late += [json.loads(x)["processing_ms"] for x in out.splitlines() if x.startswith("{")]
            ok = bool(late) and max(late) <= 250 and all(p.returncode == 0 for p in procs)
            best = n if ok else best
            rows.append(f"| {n} | {len(late)} | {pct(late, 99):.0f} ms | {max(late):.0f} ms | "
                        f"{'yes' if ok else 'no'} |")
            if not ok:
                break
    rows += ["", f"Each process replays the same {dur:.1f} s file at speed 1 (design: one daemon per stream, "
             "so a stream's faults stay its own). Start-up of the processes overlaps the streams and is "
             f"included. **{best} concurrent streams** keep up on this machine."]
    return rows

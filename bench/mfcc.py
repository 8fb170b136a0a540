"""MFCC: serstream.features vs librosa.feature.mfcc, same parameters, one thread."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import numpy as np

from bench.common import SR, median_times, speech_clips


def run(quick: bool) -> list[str]:
    import librosa

    from serstream.decode import load_audio
    from serstream.features import FeatureConfig, FeatureExtractor

    cfg = FeatureConfig()
    fx = FeatureExtractor(cfg)
    kw = dict(sr=SR, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
              n_mels=cfg.n_mels, n_mfcc=cfg.n_mfcc)
    speech = np.concatenate([load_audio(p).samples for p in speech_clips(8)])
    rows = ["| audio | serstream MFCC | librosa MFCC | speed-up | serstream × real time | "
            "+deltas serstream | +deltas librosa | speed-up | max abs diff |",
            "|---|---|---|---|---|---|---|---|---|"]
    for seconds, reps in ((0.5, 400), (3.0, 200), (10.0, 60)):
        reps = max(20, reps // 4) if quick else reps
        y = speech[: int(SR * seconds)].astype(np.float64)
        fx(y)
        librosa.feature.mfcc(y=y, **kw)

        def lib_deltas(y=y):
            m = librosa.feature.mfcc(y=y, **kw)
            return np.vstack([m, librosa.feature.delta(m, order=1, mode="nearest"),
                              librosa.feature.delta(m, order=2, mode="nearest")])

        ours, ref, ours_d, ref_d = median_times(
            [lambda y=y: fx.mfcc(y), lambda y=y: librosa.feature.mfcc(y=y, **kw),
             lambda y=y: fx(y), lib_deltas], reps)
        diff = float(np.abs(fx(y).T - lib_deltas()).max())
        rows.append(f"| {seconds:g} s | {ours * 1e3:.3f} ms | {ref * 1e3:.3f} ms | **{ref / ours:.1f}×** | "
                    f"{seconds / ours:,.0f}× | {ours_d * 1e3:.3f} ms | {ref_d * 1e3:.3f} ms | {ref_d / ours_d:.1f}× | "
                    f"{diff:.1e} |")
    rows += ["", f"Median of {'quick ' if quick else ''}repeats after warm-up, real speech, "
             "NUMBA/OMP/OPENBLAS threads = 1; the four functions of a row take turns in blocks of 10 "
             "calls, so a drift in the machine's speed cannot favour one of them. "
             "Target: ≥ 5× librosa on 3 s; parity tolerance in the tests 1e-4."]
    return rows


_FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
from serstream.features import FeatureConfig, FeatureExtractor
fx = FeatureExtractor(FeatureConfig())
t1 = time.perf_counter()
fx(np.zeros(48000, np.float32))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""

_LIBROSA_FIRST = """
import time, numpy as np
t0 = time.perf_counter()
import librosa
t1 = time.perf_counter()
librosa.feature.mfcc(y=np.zeros(48000, np.float32), sr=16000, n_fft=512, hop_length=160, win_length=400, n_mels=64, n_mfcc=40)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def first_call(quick: bool) -> list[str]:
    import os

    def measure(code: str, env: dict) -> tuple[float, float]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, **env}, check=True).stdout.split()
        return float(out[0]), float(out[1])

    with tempfile.TemporaryDirectory() as cache:
        cold = measure(_FIRST_CALL, {"NUMBA_CACHE_DIR": cache})
        warm = [measure(_FIRST_CALL, {"NUMBA_CACHE_DIR": cache}) for _ in range(1 if quick else 3)]
    lib = measure(_LIBROSA_FIRST, {})
    warm_call = float(np.median([w[1] for w in warm]))
    return [
        "| first call (3 s, fresh process) | import | first call |",
        "|---|---|---|",
        f"| serstream, empty JIT cache (compiles) | {cold[0]:.2f} s | {cold[1]:.2f} s |",
        f"| serstream, warm on-disk cache | {np.median([w[0] for w in warm]):.2f} s | {warm_call:.3f} s |",
        f"| librosa (reference; its import is lazy, the first call loads its modules) | {lib[0]:.2f} s | "
        f"{lib[1]:.3f} s |",
        "",
        f"The on-disk cache (`@njit(cache=True)`) turns a {cold[1]:.1f} s compile into a {warm_call * 1e3:.0f} ms load.",
    ]


if __name__ == "__main__":
    t = time.time()
    print("\n".join(run(True) + first_call(True)))

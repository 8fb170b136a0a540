"""``python -m bench [--quick]``: measure, print a Markdown report, write bench/RESULTS.md."""

from __future__ import annotations

import os

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--quick", action="store_true", help="fewer repeats and less audio (~2 min)")
    p.add_argument("--only", nargs="*", default=None,
                   help="sections: models footprint mfcc jit latency partials throughput jobs proxy memory startup scale "
                        "stop flood noise")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the report (default: bench/RESULTS.md for a full run; with --only, nowhere)")
    args = p.parse_args()

    from bench import batch, mfcc, models, proxy, robust, stream
    from bench.common import machine
    from serstream import catalog
    from serstream.model import EmotionModel, default_model_path

    model = default_model_path()
    model_id = EmotionModel(model).model_id
    shipped = {m.name: m.path for m in catalog.CATALOG if m.path.is_file()}
    sections = [
        ("models", "Models: cost per segment, beside the reference", lambda: models.per_segment(shipped, args.quick)),
        ("footprint", "Models: size, memory, load", lambda: models.footprint(shipped, args.quick)),
        ("mfcc", "MFCC: serstream.features vs librosa", lambda: mfcc.run(args.quick)),
        ("jit", "First call: JIT compile vs on-disk cache", lambda: mfcc.first_call(args.quick)),
        ("latency", "End-to-end latency", lambda: stream.latency(model, args.quick)),
        ("partials", "Partial results during long speech", lambda: stream.partials(model, args.quick)),
        ("throughput", "Throughput (replay --speed 0)", lambda: stream.throughput(model, args.quick)),
        ("jobs", "Batch scoring in worker processes (replay --jobs N)", lambda: batch.jobs(model, args.quick)),
        ("proxy", "Proxy: messages forwarded per second", lambda: proxy.forwarding(args.quick)),
        ("memory", "Memory over a long stream", lambda: stream.memory(model, args.quick)),
        ("startup", "Start-up", lambda: stream.startup(model, args.quick)),
        ("scale", "Scale: concurrent real-time streams", lambda: stream.scale(model, args.quick)),
        ("stop", "Stopping under a backlog", lambda: robust.stop(args.quick)),
        ("flood", "A flood of subscriptions", lambda: robust.flood(args.quick)),
        ("noise", "Segments from noise", lambda: robust.noise(args.quick)),
    ]
    out = [f"# serstream benchmarks{' (quick)' if args.quick else ''}", "",
           f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {machine()}.",
           f"Model: `{model.name}` ({model_id}). Command: `python -m bench{' --quick' if args.quick else ''}"
           f"{' --only ' + ' '.join(args.only) if args.only else ''}`.", ""]
    failed = []
    for key, title, fn in sections:
        if args.only and key not in args.only:
            continue
        t0 = time.monotonic()
        print(f"bench: {title} ...", file=sys.stderr, flush=True)
        try:
            rows = fn()
        except Exception:  # one broken section must not cost the half hour of figures around it
            failed.append(key)
            error = sys.exc_info()[1]
            # a measuring child's own error, not subprocess's restatement of its command line
            child = getattr(error, "stderr", None)
            why = (child.strip().splitlines() or [""])[-1] if isinstance(child, str) else f"{error!r}"[:500]
            print(traceback.format_exc(), child or "", file=sys.stderr, flush=True)
            rows = [f"**This section failed** (`python -m bench --only {key}` to see why):", "",
                    "```text", why, "```"]
        out += [f"## {title}", "", *rows, "", f"_({time.monotonic() - t0:.0f} s)_", ""]
        print("\n".join([f"## {title}", "", *rows, ""]), flush=True)
    out_path = args.out or (None if args.only else Path(__file__).resolve().parent / "RESULTS.md")
    if out_path is not None:  # a partial run must not replace the full report
        out_path.write_text("\n".join(out))
        print(f"written {out_path}", file=sys.stderr)
    if failed:
        print(f"bench: failed sections: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

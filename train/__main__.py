"""``python -m train fit | evaluate | eda``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

log = logging.getLogger("train")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train", description="Train and evaluate serstream emotion models.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="train, export ONNX + model card into --out")
    f.add_argument("--data", type=Path, required=True, help="folder with ravdess/, cremad/, tess/, savee/ (any case)")
    f.add_argument("--out", type=Path, default=Path("models"))
    f.add_argument("--cache", type=Path, default=Path(".cache"), help="where decoded/trimmed audio is kept")
    f.add_argument("--epochs", type=int, default=None)
    f.add_argument("--limit", type=int, default=None, help="clips per corpus (quick runs)")
    f.add_argument("--name", default="serstream-emotion")
    e = sub.add_parser("evaluate", help="score a model on a data folder; metrics JSON + confusion PNG")
    e.add_argument("--model", type=Path, required=True)
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--out", type=Path, default=Path("reports"))
    e.add_argument("--cache", type=Path, default=Path(".cache"))
    e.add_argument("--split", type=Path, default=None, help="score only one part of this split file")
    e.add_argument("--part", default="test", choices=["train", "val", "test"])
    d = sub.add_parser("eda", help="plots that motivate the design (PNG)")
    d.add_argument("--data", type=Path, required=True)
    d.add_argument("--out", type=Path, default=Path("reports"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    if not args.data.is_dir():
        print(f"train: error: data directory not found: {args.data}", file=sys.stderr)
        return 2
    try:
        if args.command == "fit":
            from train.fit import FitConfig, fit

            cfg = FitConfig(limit=args.limit, name=args.name)
            if args.epochs is not None:
                cfg = replace(cfg, epochs=args.epochs)
            fit(args.data, args.out, args.cache, cfg)
        elif args.command == "evaluate":
            from train.evaluate import evaluate_model, plot_confusion

            args.out.mkdir(parents=True, exist_ok=True)
            result, _ = evaluate_model(args.model, args.data, args.cache, args.split, args.part)
            stem = args.model.stem
            (args.out / f"{stem}.metrics.json").write_text(json.dumps(result, indent=1))
            plot_confusion(result, args.out / f"{stem}.confusion.png", f"{stem} on {args.data}")
            for c, r in result["corpora"].items():
                print(f"{c:8s} {r['clips']:5d} clips  accuracy {r['accuracy']:.3f}  macro-F1 {r['macro_f1']:.3f}")
            print(f"written: {args.out / f'{stem}.metrics.json'}, {args.out / f'{stem}.confusion.png'}")
        else:
            from train.eda import eda

            for path in eda(args.data, args.out):
                print(path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # serstream's one-line user errors
        from serstream.errors import UserError

        if isinstance(exc, UserError):
            print(f"train: error: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())

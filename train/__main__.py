"""``python -m train fit | evaluate | eda``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

log = logging.getLogger("train")


def fit_config(args: argparse.Namespace):
    """The FitConfig the command line asks for: the shipped model's choices, overridden."""
    from train.fit import FitConfig
    from train.fit_cnn import CnnConfig
    from train.fit_whisper import WhisperConfig
    from train.prepare import DataConfig
    from train.split import SplitConfig

    whisper, cnn = WhisperConfig(), CnnConfig()
    if args.epochs is not None:
        whisper, cnn = replace(whisper, epochs=args.epochs), replace(cnn, epochs=args.epochs)
    if args.layers:
        try:
            whisper = replace(whisper, layers=tuple(int(x) for x in args.layers.split(",")))
        except ValueError as exc:
            raise ValueError(f"--layers: {exc}") from None
    if getattr(args, "quantize", None):
        whisper = replace(whisper, quantize=args.quantize)
    if args.heads is not None:
        whisper = replace(whisper, heads=args.heads)
    if getattr(args, "voice_epochs", None) is not None:
        whisper = replace(whisper, voice_epochs=args.voice_epochs)
    # built once, from the final choices: FitConfig checks them together (a refit needs a precision)
    data = DataConfig(limit=args.limit, split=SplitConfig(refit=getattr(args, "refit", False)))
    return FitConfig(kind=args.kind, name=args.name or ("serstream-whisper" if args.kind == "whisper" else "serstream-fast"),
                     data=data, whisper=whisper, cnn=cnn, seen_speakers=not getattr(args, "no_seen", False))


def _reference(text: str) -> int | str:
    """``--reference``: a clip count, ``neutral`` or ``heard``."""
    if text in ("neutral", "heard"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a clip count, 'neutral' or 'heard', not {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train", description="Train and evaluate serstream emotion models.")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="train, export ONNX + model card into --out")
    f.add_argument("--data", type=Path, required=True, help="folder with ravdess/, cremad/, tess/, savee/ (any case)")
    f.add_argument("--kind", choices=["whisper", "mfcc"], default="whisper",
                   help="whisper: Whisper-base encoder + head (the default model); mfcc: the light CNN")
    f.add_argument("--out", type=Path, default=Path("models"))
    f.add_argument("--cache", type=Path, default=Path(".cache"),
                   help="where decoded/trimmed audio and encoder statistics are kept")
    f.add_argument("--epochs", type=int, default=None)
    f.add_argument("--limit", type=int, default=None, help="clips per corpus (quick runs)")
    f.add_argument("--layers", default=None, help="whisper: hidden states the head reads, e.g. 1,2,3,4")
    f.add_argument("--heads", type=int, default=None, help="whisper: heads trained from different seeds, averaged")
    f.add_argument("--quantize", choices=["auto", "int8", "fp32"], default=None,
                   help="whisper: int8 matrix products (auto: if validation holds)")
    f.add_argument("--no-seen", action="store_true", help="skip scoring the training clips (seen speakers)")
    f.add_argument("--refit", action="store_true",
                   help="whisper: the final fit, once every choice is made: the validation speakers train too "
                        "(same test speakers); each head trains for its --epochs / --voice-epochs and keeps the "
                        "last; needs --quantize int8 or fp32")
    f.add_argument("--voice-epochs", type=int, default=None,
                   help="whisper: epochs of the voice head, where they differ from --epochs")
    f.add_argument("--name", default=None, help="file name stem (default serstream-whisper / serstream-fast)")
    e = sub.add_parser("evaluate", help="score a model on a data folder; metrics JSON + confusion PNG")
    e.add_argument("--model", type=Path, required=True)
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--out", type=Path, default=Path("reports"))
    e.add_argument("--cache", type=Path, default=Path(".cache"))
    e.add_argument("--split", type=Path, default=None, help="score only one part of this split file")
    e.add_argument("--part", default="test", choices=["train", "val", "test"])
    c = sub.add_parser("cv", help="whisper: speaker-grouped cross-validation of a head on the training speakers")
    c.add_argument("--data", type=Path, required=True)
    c.add_argument("--cache", type=Path, default=Path(".cache"))
    c.add_argument("--folds", type=int, default=4)
    c.add_argument("--layers", default=None, help="hidden states the head reads, e.g. 2,3,4")
    c.add_argument("--heads", type=int, default=None)
    c.add_argument("--epochs", type=int, default=None)
    c.add_argument("--limit", type=int, default=None, help="clips per corpus (quick runs)")
    c.add_argument("--normalise", choices=["none", "corpus", "speaker"], default="none",
                   help="subtract each speaker's (or corpus's) mean statistics first: what adapting to "
                        "the voice (or microphone) heard would gain; held-out speakers use their own clips")
    c.add_argument("--reference", type=_reference, default=0,
                   help="with --normalise: how many of a held-out speaker's clips make its mean (0: all), "
                        "or 'neutral': its neutral clips (an enrolment), training clips likewise; or 'heard': "
                        "no enrolment, the clips the global head hears as neutral (scored three ways)")
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
            from train.fit import fit

            fit(args.data, args.out, args.cache, fit_config(args))
        elif args.command == "cv":
            from train.fit import cross_validation

            args.kind, args.name = "whisper", None
            result = cross_validation(args.data, args.cache, fit_config(args), args.folds, args.normalise,
                                      args.reference)
            for epoch, accs in result.get("by_epoch", {}).items():
                if epoch % 10 == 0 or epoch == result["epochs"]:
                    print(f"epoch {epoch:3d}  " + "  ".join(f"{c} {a:.3f}" for c, a in accs.items()))
            print(json.dumps({k: v for k, v in result.items() if k != "by_epoch"}))
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

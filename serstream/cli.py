"""``serstream`` command line: run, replay, listen, devices, info.

Errors meant for the user are one line on stderr and a non-zero exit code
(2: bad input or environment, 1: some replayed files failed or an unexpected fault);
tracebacks only with ``--log-level debug``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from serstream import __version__
from serstream.errors import AudioFileError, UserError

log = logging.getLogger("serstream")


# ---------------------------------------------------------------------- arguments
def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="logging detail on stderr (debug also shows tracebacks)")


def _add_pipeline(p: argparse.ArgumentParser) -> None:
    from serstream.publish import default_bind

    g = p.add_argument_group("model and publishing")
    g.add_argument("--model", type=Path, default=None,
                   help="ONNX model with serstream metadata (default: $SERSTREAM_MODEL or the shipped model)")
    g.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    g.add_argument("--bind", default=default_bind(),
                   help="ZeroMQ endpoint to publish on (default %(default)s; loopback only)")
    g.add_argument("--hwm", type=int, default=1000,
                   help="messages queued per subscriber before that subscriber starts losing them")
    g.add_argument("--stats-interval", type=float, default=5.0, help="seconds between stats messages")
    g.add_argument("--curve-secret", type=Path, default=None, metavar="FILE",
                   help="encrypt with CurveZMQ using this server secret key (from `serstream keys`)")
    g.add_argument("--allow-clients", type=Path, default=None, metavar="DIR",
                   help="with --curve-secret: only clients whose public keys (*.key) are in DIR")
    v = p.add_argument_group("voice activity detection (defaults: the model's, else serstream's)")
    v.add_argument("--vad-aggressiveness", type=int, choices=[0, 1, 2, 3], default=None,
                   help="WebRTC VAD mode: 0 keeps most audio as speech, 3 is strictest")
    v.add_argument("--vad-frame-ms", type=int, choices=[10, 20, 30], default=None)
    v.add_argument("--speech-pad-ms", type=int, default=None, help="audio kept before and after speech")
    v.add_argument("--hangover-ms", type=int, default=None, help="silence that ends a segment")
    v.add_argument("--min-speech-ms", type=int, default=None, help="shorter segments are dropped")
    v.add_argument("--max-speech-ms", type=int, default=None, help="longer speech is split")
    v.add_argument("--partial-interval-ms", type=int, default=None,
                   help="emit a partial result this often during long speech (0: never)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serstream",
        description="Real-time speech emotion recognition: microphone -> VAD -> MFCC -> ONNX -> ZeroMQ.",
    )
    parser.add_argument("--version", action="version", version=f"serstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="capture a microphone and publish emotion events")
    run.add_argument("--device", default=None, help="input device index or name substring (default: system default)")
    run.add_argument("--samplerate", type=int, default=None,
                     help="capture rate (default: the model's if the device takes it, else the device's)")
    run.add_argument("--channels", type=int, default=1, help="channels to capture (averaged to mono)")
    run.add_argument("--blocksize", type=int, default=0, help="frames per callback (0: PortAudio's choice)")
    run.add_argument("--source-id", default=None, help="name of this stream in events (default mic:<device>)")
    run.add_argument("--print", dest="print_events", action="store_true", help="also print events on stdout")
    run.add_argument("--json", action="store_true", help="print events as JSON lines (implies --print)")
    _add_pipeline(run)
    _add_common(run)

    rep = sub.add_parser("replay", help="feed audio files through the pipeline as a simulated microphone")
    rep.add_argument("files", nargs="+", type=Path, help="audio files (wav, flac, ogg, ...)")
    rep.add_argument("--speed", type=float, default=1.0,
                     help="1 = real time (default), N = N times faster, 0 = as fast as possible")
    rep.add_argument("--json", action="store_true", help="print events as JSON lines")
    rep.add_argument("--quiet", action="store_true", help="print nothing on stdout (publish only)")
    rep.add_argument("--stats", action="store_true", help="print stats messages too")
    rep.add_argument("--no-publish", action="store_true", help="do not open a ZeroMQ socket (batch scoring)")
    rep.add_argument("--wait-subscriber", type=float, default=0.0, metavar="SECONDS",
                     help="wait up to SECONDS for a subscriber before replaying, so none misses the start")
    _add_pipeline(rep)
    _add_common(rep)

    lis = sub.add_parser("listen", help="subscribe to a daemon and print its events")
    lis.add_argument("--connect", action="append", default=None,
                     help="daemon endpoint, repeatable (default tcp://127.0.0.1:5556)")
    lis.add_argument("--json", action="store_true", help="JSON lines instead of human-readable lines")
    lis.add_argument("--stats", action="store_true", help="also show stats messages")
    lis.add_argument("--count", type=int, default=None, help="exit after this many emotion events")
    lis.add_argument("--timeout", type=float, default=None, help="exit after this many seconds without a message")
    lis.add_argument("--curve-server-key", type=Path, default=None, metavar="FILE",
                     help="the daemon's public key (server.key), for an encrypted daemon")
    lis.add_argument("--curve-secret", type=Path, default=None, metavar="FILE",
                     help="this client's secret key (client.key_secret)")

    keys = sub.add_parser("keys", help="make CurveZMQ key pairs (secret files mode 0600)")
    keys.add_argument("directory", type=Path)
    keys.add_argument("--name", action="append", default=None,
                      help="key pair name, repeatable (default: server and client)")
    _add_common(keys)
    _add_common(lis)

    dev = sub.add_parser("devices", help="list audio input devices")
    dev.add_argument("--json", action="store_true")
    _add_common(dev)

    info = sub.add_parser("info", help="show a model's labels, features and provenance")
    info.add_argument("model", nargs="?", type=Path, default=None)
    info.add_argument("--json", action="store_true")
    _add_common(info)
    return parser


# ---------------------------------------------------------------------- helpers
class _Stopper:
    """First SIGINT/SIGTERM: finish the segment in progress and exit cleanly.
    Second: exit at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set():
            os.write(2, b"serstream: second signal, exiting now\n")
            os._exit(130)
        log.info("%s received: finishing the current segment", signal.Signals(signum).name)
        self.event.set()


def _load_model(args: argparse.Namespace):
    from serstream.model import EmotionModel, default_model_path

    path = args.model or default_model_path()
    model = EmotionModel(path, threads=args.threads)
    model.warmup()
    log.info("model %s: %s", model.model_id, ", ".join(model.labels))
    return model


def _vad_config(args: argparse.Namespace, model) -> Any:
    from serstream.vad import VadConfig

    base = model.meta.vad or VadConfig()
    overrides = {
        "aggressiveness": args.vad_aggressiveness,
        "frame_ms": args.vad_frame_ms,
        "speech_pad_ms": args.speech_pad_ms,
        "hangover_ms": args.hangover_ms,
        "min_speech_ms": args.min_speech_ms,
        "max_speech_ms": args.max_speech_ms,
        "partial_interval_ms": args.partial_interval_ms,
    }
    try:
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as exc:
        raise UserError(f"invalid VAD settings: {exc}") from None


def _pipeline(args: argparse.Namespace, model, publisher, sinks):
    from serstream.pipeline import Pipeline, PipelineConfig

    if args.stats_interval <= 0:
        raise UserError("--stats-interval must be positive")
    cfg = PipelineConfig(vad=_vad_config(args, model), stats_interval=args.stats_interval)
    return Pipeline(model, publisher, cfg, sinks)


def _publisher(args: argparse.Namespace):
    from serstream.publish import PublishConfig, Publisher
    from serstream.security import CurveServer

    if args.hwm < 1:
        raise UserError("--hwm must be at least 1")
    if args.allow_clients is not None and args.curve_secret is None:
        raise UserError("--allow-clients needs --curve-secret")
    curve = CurveServer(args.curve_secret, args.allow_clients) if args.curve_secret else None
    pub = Publisher(PublishConfig(bind=args.bind, hwm=args.hwm, curve=curve))
    log.info("publishing on %s (session %s)", pub.endpoint, pub.session)
    return pub


# ---------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from serstream.capture import MicSource
    from serstream.render import Printer

    stopper = _Stopper()
    stopper.install()
    model = _load_model(args)
    source = MicSource(args.device, sr=model.sample_rate, samplerate=args.samplerate,
                       channels=args.channels, blocksize=args.blocksize, source_id=args.source_id)
    publisher = _publisher(args)
    sinks = [Printer(as_json=args.json)] if (args.print_events or args.json) else []
    pipeline = _pipeline(args, model, publisher, sinks)
    log.info("capturing from %r at %d Hz; Ctrl-C to stop", source.device_name, source.sample_rate)
    try:
        pipeline.run(source, stopper.event)
    finally:
        publisher.close()
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from serstream.render import Printer
    from serstream.replay import FileSource

    if args.speed < 0:
        raise UserError("--speed must be >= 0 (0 = as fast as possible)")
    stopper = _Stopper()
    stopper.install()
    model = _load_model(args)
    publisher = None if args.no_publish else _publisher(args)
    sinks = [] if args.quiet else [Printer(as_json=args.json, stats=args.stats)]
    pipeline = _pipeline(args, model, publisher, sinks)
    if (publisher is not None and args.wait_subscriber > 0
            and not publisher.wait_for_subscriber(args.wait_subscriber, stopper.event)
            and not stopper.event.is_set()):
        log.warning("no subscriber after %.1f s; replaying anyway", args.wait_subscriber)
    failed: list[str] = []
    done = 0
    try:
        for path in args.files:
            if stopper.event.is_set():
                break
            try:
                source = FileSource(path, sr=model.sample_rate, speed=args.speed)
            except AudioFileError as exc:
                log.error("%s", exc)
                failed.append(str(path))
                continue
            pipeline.run(source, stopper.event)
            if source.error is not None:
                log.error("%s", source.error)
                failed.append(str(path))
            else:
                done += 1
    finally:
        if publisher is not None:
            publisher.close()
    if failed:
        log.error("%d of %d files failed: %s", len(failed), len(args.files), ", ".join(failed))
        return 1
    log.info("replayed %d files: %d segments, %d events", done, pipeline.counters.segments,
             pipeline.counters.events)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    from serstream.client import DEFAULT_CONNECT, Subscriber
    from serstream.render import Printer

    stopper = _Stopper()
    stopper.install()
    topics = ("emotion", "stats") if args.stats else ("emotion",)
    from serstream.security import CurveClient

    printer = Printer(as_json=args.json, stats=args.stats)
    if (args.curve_server_key is None) != (args.curve_secret is None):
        raise UserError("an encrypted daemon needs both --curve-server-key and --curve-secret")
    curve = CurveClient(args.curve_server_key, args.curve_secret) if args.curve_secret else None
    try:
        sub = Subscriber(args.connect or [DEFAULT_CONNECT], topics=topics, curve=curve)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    seen = 0
    with sub:
        while not stopper.event.is_set():
            ev = sub.recv(timeout=0.2 if args.timeout is None else min(0.2, args.timeout))
            if ev is None:
                if args.timeout is not None:
                    args.timeout -= 0.2
                    if args.timeout <= 0:
                        break
                continue
            printer(ev.pop("topic"), ev)
            if ev.get("type") == "emotion":
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
        if sub.gaps:
            log.warning("lost %d messages in %d gaps", sub.lost, sub.gaps)
    if args.count is not None and seen < args.count:
        log.error("received %d of %d events before timing out", seen, args.count)
        return 1
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from serstream.capture import list_input_devices

    devices = list_input_devices()
    if args.json:
        print(json.dumps(devices, indent=2))
        return 0
    if not devices:
        raise UserError("no audio input devices found")
    for d in devices:
        mark = "*" if d["default"] else " "
        print(f"{mark} {d['index']:>3}  {d['name']}  ({d['channels']} in, "
              f"{d['default_samplerate']:.0f} Hz, {d['hostapi']})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from serstream.model import EmotionModel, default_model_path

    path = args.model or default_model_path()
    model = EmotionModel(path)
    summary = model.meta.summary()
    summary["model_id"] = model.model_id
    summary["path"] = str(path)
    summary["size_bytes"] = path.stat().st_size
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    feats = model.meta.features
    print(f"model      {model.model_id}")
    print(f"file       {path} ({summary['size_bytes'] / 1e6:.2f} MB)")
    print(f"labels     {', '.join(model.labels)}")
    print(f"audio      {model.sample_rate} Hz mono")
    print(f"features   {feats.n_mfcc} MFCC (n_fft {feats.n_fft}, win {feats.win_length}, hop "
          f"{feats.hop_length}, {feats.n_mels} mels) + {feats.delta_order} delta orders "
          f"= {feats.n_features} per frame")
    if model.meta.vad:
        print(f"vad        {json.dumps(model.meta.vad.to_dict())}")
    for k, v in model.meta.provenance.items():
        text = v if isinstance(v, str) else json.dumps(v)
        print(f"{k:<10} {text[:200]}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from serstream.security import make_keys

    for name in args.name or ["server", "client"]:
        if not name or "/" in name or name.startswith("."):
            raise UserError(f"bad key name {name!r}")
        public, secret = make_keys(args.directory, name)
        print(f"{name}: public {public}  secret {secret} (mode 600)")
    return 0


COMMANDS = {
    "run": cmd_run,
    "replay": cmd_replay,
    "listen": cmd_listen,
    "devices": cmd_devices,
    "info": cmd_info,
    "keys": cmd_keys,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = getattr(logging, args.log_level.upper())
    logging.basicConfig(level=level, format="serstream: %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        rc = COMMANDS[args.command](args)
        # done and on the way out: a late Ctrl-C must not turn a clean exit into a crash
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return rc
    except UserError as exc:
        if level <= logging.DEBUG:
            log.exception("details")
        print(f"serstream: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one line, traceback only on request
        if level <= logging.DEBUG:
            log.exception("unexpected error")
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"serstream: error: unexpected {type(exc).__name__}: {first} "
              "(run with --log-level debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

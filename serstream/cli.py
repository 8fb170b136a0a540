"""``serstream`` command line: run, replay, listen, view, proxy, keys, devices, info.

Errors meant for the user are one line on stderr and a non-zero exit code
(2: bad input or environment, 1: some replayed files failed or an unexpected fault);
tracebacks only with ``--log-level debug``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from serstream import __version__
from serstream.errors import AudioFileError, UserError
from serstream.limits import THREADS, Bound, limits_text
from serstream.stopping import STOP_SIGNALS, Stopper

# the ranges of flags that belong to no configuration class: each is checked and stated in
# --help from the one declaration
WAIT_SUBSCRIBER = Bound(0.0, 86_400.0, "s", integer=False)
LISTEN_TIMEOUT = Bound(0.01, 1e6, "s", integer=False, optional=True)
LISTEN_COUNT = Bound(1, 10**9, optional=True)
ENROL_SPEECH = Bound(1.0, 600.0, "s", integer=False)
ENROL_SPEECH_DEFAULT = 20.0  # about ten sentences: training averaged 4 to 12 calm clips per speaker

log = logging.getLogger("serstream")


# ---------------------------------------------------------------------- arguments
# Every default shown here is read from the configuration dataclass that defines it.
def _add_common(p: argparse.ArgumentParser) -> None:
    from serstream.logs import LOG_FORMATS

    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="logging detail on stderr; debug also shows tracebacks (default: %(default)s)")
    p.add_argument("--log-format", default="text", choices=LOG_FORMATS,
                   help="log lines as text for a person, or one JSON object per line for a log "
                        "collector (default: %(default)s)")


def _add_output(p: argparse.ArgumentParser, default: str) -> None:
    """The same stdout options for run and replay; only the default differs (a daemon
    stays quiet, a replay prints)."""
    g = p.add_argument_group(f"output on stdout (default: {'--print' if default == 'text' else '--quiet'})")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--print", dest="output", action="store_const", const="text",
                   help="print each emotion event as a line")
    x.add_argument("--json", dest="output", action="store_const", const="json",
                   help="print each message as a JSON line, exactly as published "
                        "(serstream/schema/event.schema.json)")
    x.add_argument("--quiet", dest="output", action="store_const", const="none",
                   help="print nothing on stdout (publish only)")
    g.add_argument("--stats", action="store_true",
                   help="print stats messages too (implies --print unless --json)")
    p.set_defaults(output=None, output_default=default)


def _add_publishing(g, bind: str, bind_help: str) -> None:
    """Where and to whom messages go: the same options for run, replay and proxy."""
    from serstream.publish import PublishConfig

    g.add_argument("--bind", default=bind, metavar="ENDPOINT",
                   help=f"ZeroMQ endpoint to publish on; loopback unless you choose otherwise (default: {bind_help})")
    g.add_argument("--hwm", type=int, default=PublishConfig().hwm, metavar="N",
                   help=f"messages queued per subscriber, {limits_text(PublishConfig, 'hwm')}, before that "
                        "subscriber starts losing them (default: %(default)s)")
    g.add_argument("--curve-secret", type=Path, default=None, metavar="FILE",
                   help="encrypt with CurveZMQ using this server secret key (from `serstream keys`)")
    g.add_argument("--allow-clients", type=Path, default=None, metavar="DIR",
                   help="with --curve-secret: only clients whose public keys (*.key) are in DIR")


def _add_subscribing(p: argparse.ArgumentParser, what: str) -> None:
    """Which daemon and how to get in: the same options for listen and view."""
    from serstream.client import DEFAULT_CONNECT

    p.add_argument("--connect", action="append", default=None, metavar="ENDPOINT",
                   help=f"{what} endpoint, repeatable (default: {DEFAULT_CONNECT})")
    p.add_argument("--curve-server-key", type=Path, default=None, metavar="FILE",
                   help="the daemon's public key (server.key), for an encrypted daemon")
    p.add_argument("--curve-secret", type=Path, default=None, metavar="FILE",
                   help="this client's secret key (client.key_secret)")


def _add_pipeline(p: argparse.ArgumentParser, publishing: bool = True) -> None:
    """Model and VAD options; ``publishing`` (run, replay): the socket, stats and --voice too."""
    from serstream.pipeline import PipelineConfig
    from serstream.publish import PublishConfig, default_bind
    from serstream.vad import VAD_FRAME_MS, VAD_MODES, VadConfig

    pipe, vad = PipelineConfig(), VadConfig()

    def vad_range(name: str) -> str:
        return limits_text(VadConfig, name)

    g = p.add_argument_group("model and publishing" if publishing else "model")
    g.add_argument("--model", default=None, metavar="NAME|FILE",
                   help="a shipped model by name (whisper: accurate, the default; fast: the light MFCC CNN) "
                        "or an ONNX file with serstream metadata (default: $SERSTREAM_MODEL, else whisper)")
    g.add_argument("--threads", type=int, default=1,
                   help=f"ONNX Runtime intra-op threads, {THREADS.text()} (default: %(default)s)")
    if publishing:
        g.add_argument("--voice", type=Path, default=None, metavar="FILE.json",
                       help="judge the speech against this speaker's enrolled voice (`serstream enrol`), "
                            "not the average training voice; the model must be the one it was enrolled with")
        _add_publishing(g, default_bind(), f"$SERSTREAM_BIND, else {PublishConfig.bind}")
        g.add_argument("--stats-interval", type=float, default=pipe.stats_interval, metavar="SECONDS",
                       help=f"seconds between stats messages, {limits_text(PipelineConfig, 'stats_interval')} "
                            "(default: %(default)s)")
    v = p.add_argument_group("voice activity detection (default: the model's settings, else serstream's, shown)")
    v.add_argument("--vad-aggressiveness", type=int, choices=VAD_MODES, default=None,
                   help=f"WebRTC VAD mode: 0 keeps most audio as speech, 3 is strictest ({vad.aggressiveness})")
    v.add_argument("--vad-frame-ms", type=int, choices=VAD_FRAME_MS, default=None,
                   help=f"VAD frame length ({vad.frame_ms})")
    v.add_argument("--speech-pad-ms", type=int, default=None, metavar="MS",
                   help=f"audio kept before and after speech, {vad_range('speech_pad_ms')}, at most the "
                        f"hangover ({vad.speech_pad_ms})")
    v.add_argument("--hangover-ms", type=int, default=None, metavar="MS",
                   help=f"silence that ends a segment, {vad_range('hangover_ms')} ({vad.hangover_ms})")
    v.add_argument("--min-speech-ms", type=int, default=None, metavar="MS",
                   help=f"shorter segments are dropped, {vad_range('min_speech_ms')} ({vad.min_speech_ms})")
    v.add_argument("--max-speech-ms", type=int, default=None, metavar="MS",
                   help=f"longer speech is split, {vad_range('max_speech_ms')} ({vad.max_speech_ms})")
    v.add_argument("--partial-interval-ms", type=int, default=None, metavar="MS",
                   help=f"emit a partial result this often during long speech; 0: never, "
                        f"{vad_range('partial_interval_ms')} ({vad.partial_interval_ms})")
    v.add_argument("--min-level-dbfs", type=float, default=None, metavar="DB",
                   help=f"quieter audio (RMS) is never speech: digital silence, a muted input, "
                        f"{vad_range('min_level_dbfs')} ({vad.min_level_dbfs:g})")
    v.add_argument("--noise-margin-db", type=float, default=None, metavar="DB",
                   help=f"speech must rise this far above the steady noise floor the gate tracks "
                        f"(hum, fans, hiss are never speech), {vad_range('noise_margin_db')} "
                        f"({vad.noise_margin_db:g})")


def _add_capture(p: argparse.ArgumentParser) -> None:
    from serstream.capture import CaptureConfig

    cap = CaptureConfig()
    g = p.add_argument_group("capture")
    g.add_argument("--device", default=cap.device, metavar="INDEX|NAME",
                   help="input device index or name substring, see `serstream devices` (default: system default)")
    g.add_argument("--samplerate", type=int, default=cap.samplerate, metavar="HZ",
                   help=f"capture rate, {limits_text(CaptureConfig, 'samplerate')} (default: the model's if the "
                        "device takes it, else the device's)")
    g.add_argument("--channels", type=int, default=cap.channels,
                   help=f"channels to capture, averaged to mono, {limits_text(CaptureConfig, 'channels')} "
                        "(default: %(default)s)")
    g.add_argument("--blocksize", type=int, default=cap.blocksize, metavar="FRAMES",
                   help=f"frames per callback; 0: PortAudio's choice, {limits_text(CaptureConfig, 'blocksize')} "
                        "(default: %(default)s)")
    g.add_argument("--source-id", default=cap.source_id, metavar="NAME",
                   help="name of this stream in events (default: mic:<device name>)")


def build_parser() -> argparse.ArgumentParser:
    from serstream.proxy import DEFAULT_PROXY_BIND
    from serstream.replay import ReplayConfig
    from serstream.view import ViewConfig

    rpl = ReplayConfig()
    parser = argparse.ArgumentParser(
        prog="serstream",
        description="Real-time speech emotion recognition: microphone -> VAD -> MFCC -> ONNX -> ZeroMQ.",
    )
    parser.add_argument("--version", action="version", version=f"serstream {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="capture a microphone and publish emotion events")
    _add_capture(run)
    _add_output(run, default="none")
    _add_pipeline(run)
    _add_common(run)
    c = run.add_argument_group("configuration file")
    c.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                   help="read options from a TOML file: every option above as a key named like its "
                        "flag (hangover-ms = 300; output = \"json\"); flags on the command line win")
    c.add_argument("--print-config", action="store_true",
                   help="print the effective configuration as such a file and exit")

    rep = sub.add_parser("replay", help="feed audio files through the pipeline as a simulated microphone")
    rep.add_argument("files", nargs="+", type=Path, metavar="FILE",
                     help="audio files (wav, flac, ogg: whatever libsndfile reads); - reads standard input "
                          "(WAV, AIFF or AU through a pipe: `sox in.mp3 -t wav - | serstream replay -`)")
    rep.add_argument("--speed", type=float, default=rpl.speed,
                     help="1 = real time, N = N times faster, 0 = as fast as possible; "
                          f"{limits_text(ReplayConfig, 'speed')} (default: %(default)s)")
    rep.add_argument("--no-publish", action="store_true", help="do not open a ZeroMQ socket (batch scoring)")
    rep.add_argument("--wait-subscriber", type=float, default=0.0, metavar="SECONDS",
                     help=f"wait up to SECONDS ({WAIT_SUBSCRIBER.text()}) for a subscriber before replaying, so none "
                          "misses the start")
    b = rep.add_argument_group("batch results")
    b.add_argument("--output", dest="rows_file", type=Path, default=None, metavar="FILE.csv|FILE.jsonl",
                   help="write one row per segment (its final event; .jsonl: the event as published)")
    b.add_argument("--summary", dest="summary_file", type=Path, default=None, metavar="FILE.csv|FILE.jsonl",
                   help="write one row per input file: label by duration-weighted probabilities, "
                        "confidence, every label's probability, segments, duration, error")
    b.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="score files in N worker processes (each with its own model session; output "
                        "in input order); needs --speed 0 (default: %(default)s)")
    b.add_argument("--progress-interval", type=float, default=10.0, metavar="SECONDS",
                   help="progress on stderr: a live bar on a terminal, otherwise a line every SECONDS "
                        "(0: at every step); none with --quiet (default: %(default)s)")
    _add_output(rep, default="text")
    _add_pipeline(rep)
    _add_common(rep)

    enr = sub.add_parser("enrol", help="learn a speaker's calm voice from files or the microphone, for --voice")
    enr.add_argument("files", nargs="*", type=Path, metavar="FILE",
                     help="recordings of the speaker talking in an ordinary, calm voice (no files: capture "
                          "from the microphone until --speech-seconds of speech are heard)")
    enr.add_argument("--out", type=Path, required=True, metavar="FILE.json",
                     help="where to write the voice (replaced atomically if it exists)")
    enr.add_argument("--name", default=None,
                     help="the voice's name in events (default: the --out file's stem)")
    enr.add_argument("--speech-seconds", type=float, default=ENROL_SPEECH_DEFAULT, metavar="SECONDS",
                     help=f"microphone: the speech to collect, {ENROL_SPEECH.text()} (default: %(default)s; "
                          "Ctrl-C ends sooner with what was heard)")
    _add_capture(enr)
    _add_pipeline(enr, publishing=False)
    _add_common(enr)

    lis = sub.add_parser("listen", help="subscribe to a daemon and print its events")
    _add_subscribing(lis, "daemon (or proxy)")
    lis.add_argument("--json", action="store_true",
                     help="print each message as a JSON line, as received, instead of a human-readable line")
    lis.add_argument("--stats", action="store_true", help="also show stats messages")
    lis.add_argument("--count", type=int, default=None, metavar="N",
                     help=f"exit after N emotion events, {LISTEN_COUNT.text()} (exit 1 if the timeout comes first)")
    lis.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                     help=f"exit once SECONDS ({LISTEN_TIMEOUT.text()}) pass without a message: an idle timeout, restarted "
                          "by each message; exit 1 if nothing came at all (default: wait for ever)")
    _add_common(lis)

    view = sub.add_parser("view", help="show a daemon's stream live on a local web page")
    _add_subscribing(view, "daemon (or proxy)")
    view.add_argument("--http", default=ViewConfig.http, metavar="HOST:PORT",
                      help="where to serve the page; loopback unless you choose otherwise, port 0: any "
                           "free one (default: %(default)s)")
    view.add_argument("--history", type=float, default=ViewConfig.history_s / 60, metavar="MINUTES",
                      help="how much of the recent past a page shows when it opens (default: %(default)s)")
    _add_common(view)

    prx = sub.add_parser("proxy", help="join the streams of several daemons into one endpoint")
    prx.add_argument("--connect", action="append", required=True, metavar="ENDPOINT",
                     help="a daemon (or another proxy), repeatable; one that starts later or restarts "
                          "is picked up")
    g = prx.add_argument_group("towards subscribers, as a daemon publishes")
    _add_publishing(g, DEFAULT_PROXY_BIND, DEFAULT_PROXY_BIND)
    g = prx.add_argument_group("towards encrypted daemons, as `listen` connects")
    g.add_argument("--daemon-key", action="append", default=None, type=Path, metavar="FILE",
                   help="the daemons' public key (server.key): once for all, or once per --connect in "
                        "the same order")
    g.add_argument("--daemon-secret", type=Path, default=None, metavar="FILE",
                   help="this proxy's client secret key, allowed by the daemons")
    _add_common(prx)

    keys = sub.add_parser("keys", help="make CurveZMQ key pairs (secret files mode 0600)")
    keys.add_argument("directory", type=Path, metavar="DIR",
                      help="where to write NAME.key (public) and NAME.key_secret (secret); created if missing")
    keys.add_argument("--name", action="append", default=None,
                      help="key pair name, repeatable (default: server and client)")
    _add_common(keys)

    dev = sub.add_parser("devices", help="list audio input devices")
    dev.add_argument("--json", action="store_true", help="a JSON list instead of one line per device")
    _add_common(dev)

    info = sub.add_parser("info", help="list the shipped models, or show one model's labels, features and provenance")
    info.add_argument("model", nargs="?", default=None, metavar="NAME|FILE",
                      help="a shipped model's name or an ONNX file (default: list the shipped models, "
                           "with their cost on this machine and their accuracy)")
    info.add_argument("--json", action="store_true", help="everything as one JSON document")
    _add_common(info)
    return parser


# ---------------------------------------------------------------------- helpers
def _output(args: argparse.Namespace) -> str:
    """What run's and replay's output options ask for: text, json or none."""
    return args.output or ("text" if args.stats else args.output_default)


def _printer(args: argparse.Namespace):
    """The stdout sink that run's and replay's output options ask for, or None."""
    from serstream.render import Printer

    output = _output(args)
    if output == "none":
        if args.stats:
            raise UserError("--stats prints stats messages: it cannot go with --quiet")
        return None
    return Printer(as_json=output == "json", stats=args.stats)


# Flags whose name is not their setting's, dashed
_FLAG_OF = {"aggressiveness": "--vad-aggressiveness", "frame_ms": "--vad-frame-ms", "threads": "--threads"}
_VAD_FLAGS = {"aggressiveness": "vad_aggressiveness", "frame_ms": "vad_frame_ms", "speech_pad_ms": "speech_pad_ms",
              "hangover_ms": "hangover_ms", "min_speech_ms": "min_speech_ms", "max_speech_ms": "max_speech_ms",
              "partial_interval_ms": "partial_interval_ms", "min_level_dbfs": "min_level_dbfs",
              "noise_margin_db": "noise_margin_db"}  # VadConfig field -> argparse dest


def _flag_error(exc: ValueError, context: str = "") -> UserError:
    """A configuration's one-line ValueError ("hwm must be in ..."), in the words of the
    flags that set it ("--hwm must be in ...")."""
    parts = []
    for part in str(exc).split("; "):
        name, sep, rest = part.partition(" ")
        flag = _FLAG_OF.get(name, "--" + name.replace("_", "-")) if name.isidentifier() else name
        parts.append(f"{flag}{sep}{rest}")
    return UserError(context + "; ".join(parts))


def _build(cls: type, context: str = "", **kw: Any) -> Any:
    try:
        return cls(**kw)
    except ValueError as exc:
        raise _flag_error(exc, context) from None


def _check_flags(args: argparse.Namespace) -> None:
    """Every number run and replay take, typed and bounded before anything is loaded:
    a bad flag costs one line, not a model load (and never a traceback)."""
    from serstream.limits import bound_of
    from serstream.pipeline import PipelineConfig
    from serstream.publish import PublishConfig
    from serstream.vad import VadConfig

    problems = [p for p in (
        THREADS.problem("threads", args.threads),
        WAIT_SUBSCRIBER.problem("wait_subscriber", getattr(args, "wait_subscriber", 0.0)),
    ) if p]
    if problems:
        raise _flag_error(ValueError("; ".join(problems)))
    if hasattr(args, "stats_interval"):  # (enrol neither publishes nor sends stats)
        _build(PipelineConfig, stats_interval=args.stats_interval)
        _build(PublishConfig, hwm=args.hwm)
    vad = [p for field, dest in _VAD_FLAGS.items() if (value := getattr(args, dest)) is not None
           and (p := bound_of(VadConfig, field).problem(field, value))]
    if vad:
        raise _flag_error(ValueError("; ".join(vad)), "invalid VAD settings: ")


def _load_model(args: argparse.Namespace):
    from serstream.catalog import resolve
    from serstream.model import EmotionModel

    path = resolve(args.model)
    model = EmotionModel(path, threads=args.threads)
    voice = _voice(args, model)
    model.warmup()  # a model that cannot serve is refused here, in one line (with its voice, if any)
    log.info("model %s: %s", model.model_id, ", ".join(model.labels))
    if voice is not None:
        log.info("judging speech against the voice %r (enrolled %s from %d segments, %.1f s of speech)",
                 voice.name, voice.created or "at an unknown time", voice.segments, voice.speech_s)
    return model


def _voice(args: argparse.Namespace, model):
    """``--voice``: loaded, checked against ``model`` and put to use (None without it)."""
    from serstream.voice import Voice

    if getattr(args, "voice", None) is None:
        return None
    voice = Voice.load(args.voice)
    voice.check(model, where=f"--voice {args.voice}")
    model.use_voice(voice.statistics, voice.name)
    return voice


def _vad_config(args: argparse.Namespace, model) -> Any:
    from serstream.vad import VadConfig

    base = model.meta.vad or VadConfig()
    overrides = {field: value for field, dest in _VAD_FLAGS.items() if (value := getattr(args, dest)) is not None}
    try:  # each is in range (_check_flags); together with the model's they may not fit
        return replace(base, **overrides)
    except ValueError as exc:
        raise _flag_error(exc, "invalid VAD settings: ") from None


def _pipeline(args: argparse.Namespace, model, publisher, sinks, listeners=None):
    from serstream.pipeline import Pipeline, PipelineConfig

    cfg = PipelineConfig(vad=_vad_config(args, model),
                         stats_interval=getattr(args, "stats_interval", PipelineConfig.stats_interval))
    pipeline = Pipeline(model, publisher, cfg, sinks, listeners=listeners)
    if publisher is not None:
        log.info("publishing on %s (session %s)", publisher.endpoint, pipeline.outlet.session)
    return pipeline


def _publish_config(args: argparse.Namespace):
    from serstream.publish import PublishConfig
    from serstream.security import CurveServer

    if args.allow_clients is not None and args.curve_secret is None:
        raise UserError("--allow-clients needs --curve-secret")
    curve = CurveServer.load(args.curve_secret, args.allow_clients) if args.curve_secret else None
    return _build(PublishConfig, bind=args.bind, hwm=args.hwm, curve=curve)


def _publisher(args: argparse.Namespace):
    from serstream.publish import Publisher

    return Publisher(_publish_config(args))


def _subscriber(args: argparse.Namespace, topics: tuple[str, ...]):
    """listen's and view's subscriber, from their shared options."""
    from serstream.client import DEFAULT_CONNECT, Subscriber
    from serstream.security import CurveClient

    if (args.curve_server_key is None) != (args.curve_secret is None):
        raise UserError("an encrypted daemon needs both --curve-server-key and --curve-secret")
    curve = CurveClient(args.curve_server_key, args.curve_secret) if args.curve_secret else None
    try:
        return Subscriber(args.connect or [DEFAULT_CONNECT], topics=topics, curve=curve)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _summary(what: str, c) -> None:
    log.info("%s: %d segments, %d events%s%s", what, c.segments, c.events,
             f", {c.errors} segments not classified" if c.errors else "",
             f", {c.unprocessed_s:.2f} s of captured audio left unprocessed by the stop"
             if c.unprocessed_s >= 0.01 else "")


# ---------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace, stopper: Stopper) -> int:
    from serstream.capture import CaptureConfig, MicSource
    from serstream.notify import notify

    if args.print_config:
        from serstream.config_file import render

        args.output = _output(args)
        sources = f"defaults, then {args.config}, then the command line" if args.config else \
            "defaults, then the command line"
        print(render(args, _subcommand("run"), sources), end="")
        return 0
    stopper.what = "finishing the current segment"
    capture = _build(CaptureConfig, device=args.device, samplerate=args.samplerate, channels=args.channels,
                     blocksize=args.blocksize, source_id=args.source_id)
    _check_flags(args)
    sinks = [p] if (p := _printer(args)) else []
    model = _load_model(args)
    source = MicSource(capture, sr=model.sample_rate)
    publisher = _publisher(args)
    try:
        pipeline = _pipeline(args, model, publisher, sinks)
        stopper.on_stop(pipeline.cut_short)
        log.info("capturing from %r at %d Hz; Ctrl-C to stop", source.device_name, source.sample_rate)
        # for systemd (Type=notify): up once the model is loaded, the socket bound and the device open
        stopper.on_stop(lambda final: final or notify("STOPPING=1", "STATUS=finishing the current segment"))
        notify("READY=1", f"STATUS=publishing on {publisher.endpoint}, capturing from {source.device_name}")
        pipeline.run(source, stopper.event)
    finally:
        publisher.close()
    _summary(f"captured {pipeline.stats().stream_s:.1f} s from {source.device_name!r}", pipeline.counters)
    return 0


def _batch_sinks(args: argparse.Namespace, labels: tuple[str, ...]):
    """Replay's sinks (stdout, --output, --summary, progress), in the order they write."""
    from serstream.progress import EraseBar, Progress, audio_seconds
    from serstream.tables import FileSummaries, SegmentRows

    if not args.progress_interval >= 0 or math.isinf(args.progress_interval):  # nan too
        raise UserError("--progress-interval must be >= 0")
    printer = _printer(args)
    progress = None
    if _output(args) != "none":
        bar = sys.stderr.isatty() and args.log_format == "text"
        progress = Progress(len(args.files), audio_seconds(args.files), bar=bar, interval=args.progress_interval)
        if bar:
            for handler in logging.getLogger().handlers:
                handler.addFilter(EraseBar(progress))
    rows = SegmentRows(args.rows_file, labels) if args.rows_file else None
    try:
        summary = FileSummaries(args.summary_file, labels) if args.summary_file else None
    except UserError:
        if rows is not None:
            rows.close()
        raise
    sinks = [s for s in (printer and (progress.around(printer) if progress else printer), rows, summary) if s]
    return sinks, rows, summary, progress


def cmd_replay(args: argparse.Namespace, stopper: Stopper) -> int:
    import time

    from serstream.decode import STDIN
    from serstream.parallel import Restamper, score_files
    from serstream.replay import FileSource, ReplayConfig
    from serstream.tables import check_format

    replay = _build(ReplayConfig, speed=args.speed)
    _check_flags(args)
    if sum(str(p) == STDIN for p in args.files) > 1:
        raise UserError("standard input ('-') can be replayed only once")
    if args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    if args.jobs > 1 and args.speed != 0:
        raise UserError("--jobs scores files side by side as fast as they go: use it with --speed 0")
    for option, path in (("--output", args.rows_file), ("--summary", args.summary_file)):
        if path is not None:
            check_format(path, option)
    stopper.what = "finishing the current segment" if args.jobs == 1 else "ending the files in progress"
    model = _load_model(args)
    sinks, rows, summary, progress = _batch_sinks(args, model.labels)
    publisher = None if args.no_publish else _publisher(args)
    failed: list[str] = []
    done: list[str] = []

    def finished(path: Path, error: str | None, note: str | None = None) -> None:
        if error is not None:
            log.error("%s", error)
        (done if error is None else failed).append(str(path))
        if summary is not None:
            summary.end(str(path), error or note)  # a note (stopped early) is not a failure

    try:
        # one process follows its progress through the messages; workers report per file done
        follow = progress is not None and args.jobs == 1
        pipeline = _pipeline(args, model, publisher, [*sinks, progress] if follow else sinks)
        stopper.on_stop(pipeline.cut_short)
        counters = pipeline.counters
        if (publisher is not None and args.wait_subscriber > 0
                and not publisher.wait_for_subscriber(args.wait_subscriber, stopper.event)
                and not stopper.event.is_set()):
            log.warning("no subscriber after %.1f s; replaying anyway", args.wait_subscriber)
        if args.jobs > 1:
            restamp = Restamper(pipeline.outlet, lambda: time.monotonic() - pipeline.started)
            on_done = None if progress is None else (lambda r: progress.file_done(r.duration_s))
            voice = None if model.voice is None else (model.voice, model.voice_name)
            for result in score_files(args.files, args.jobs, model.path, args.threads, pipeline.config, replay,
                                      stopper.event, on_done=on_done, voice=voice):
                restamp.send_file(result)
                stopped = result.stopped and result.error is None
                finished(result.path, result.error, "stopped before the end of the file" if stopped else None)
            counters = restamp.counters
        else:
            for path in args.files:
                if stopper.event.is_set():
                    break
                try:
                    source = FileSource(path, sr=model.sample_rate, config=replay)
                except AudioFileError as exc:  # whatever the OS says about one file (decode says it so)
                    source, error = None, str(exc)
                else:
                    pipeline.run(source, stopper.event)
                    error = None if source.error is None else str(source.error)
                if progress is not None:
                    progress.file_done()
                stopped = source is not None and stopper.event.is_set()
                finished(path, error, "stopped before the end of the file" if stopped else None)
    finally:
        if publisher is not None:
            publisher.close()
        for table in (rows, summary):
            if table is not None:
                table.close()
    if progress is not None:
        progress.finish()
    if failed:
        log.error("%d of %d files failed: %s", len(failed), len(args.files), ", ".join(failed))
    _summary(f"replayed {len(done)} of {len(args.files)} files", counters)
    return 1 if failed else 0


def cmd_enrol(args: argparse.Namespace, stopper: Stopper) -> int:
    """Average the pooled statistics of the speaker's calm speech into a voice file.

    The speech goes through the very pipeline that will serve (VAD, features, the
    model), one value per final segment, as training took one per clip."""
    from serstream.capture import CaptureConfig, MicSource
    from serstream.replay import FileSource, ReplayConfig
    from serstream.voice import FEW_SEGMENTS, Enrolment

    _check_flags(args)
    if (why := ENROL_SPEECH.problem("speech_seconds", args.speech_seconds)) is not None:
        raise _flag_error(ValueError(why))
    if not args.out.parent.is_dir():
        raise UserError(f"--out {args.out}: no such folder {args.out.parent}")
    name = args.name if args.name is not None else args.out.stem
    if not name.strip():
        raise UserError("--name must not be empty")
    capture = None if args.files else _build(
        CaptureConfig, device=args.device, samplerate=args.samplerate, channels=args.channels,
        blocksize=args.blocksize, source_id=args.source_id)
    stopper.what = "finishing the current segment, then writing the voice"
    model = _load_model(args)
    enrolment = Enrolment(model, need_s=None if args.files else args.speech_seconds)

    def heard(segment, result, sr: int) -> None:
        if segment.final:
            log.info("heard %.1f s of speech%s", (segment.end - segment.start) / sr,
                     f" ({enrolment.speech_s:.1f} of {args.speech_seconds:g} s)" if capture else "")

    pipeline = _pipeline(args, model, None, [], listeners=[enrolment, heard])
    stopper.on_stop(pipeline.cut_short)
    failed = []
    if capture is None:
        for path in args.files:
            if stopper.event.is_set():
                break
            try:
                source = FileSource(path, sr=model.sample_rate, config=ReplayConfig(speed=0.0))
            except AudioFileError as exc:
                log.error("%s", exc)
                failed.append(str(path))
                continue
            pipeline.run(source, stopper.event)
            if source.error is not None:
                log.error("%s", source.error)
                failed.append(str(path))
        # a voice from part of what was asked for is not the voice that was asked for
        if failed:
            raise UserError(f"{len(failed)} of {len(args.files)} files could not be read ({', '.join(failed)}): "
                            "nothing written", exit_code=1)
        if stopper.event.is_set():
            raise UserError("stopped before every file was heard: nothing written", exit_code=1)
        sources = tuple(str(p) for p in args.files)
    else:
        source = MicSource(capture, sr=model.sample_rate)
        stopper.on_stop(lambda final: enrolment.enough.set())
        log.info("capturing from %r: speak in your ordinary, calm voice until %g s of speech are heard "
                 "(Ctrl-C to end sooner)", source.device_name, args.speech_seconds)
        pipeline.run(source, enrolment.enough)
        sources = (source.source_id,)
    voice = enrolment.voice(name, sources)
    if voice.segments < FEW_SEGMENTS:
        log.warning("only %d segment%s of speech: a voice from so little says more about the words than the "
                    "speaker; %d or more are better", voice.segments, "" if voice.segments == 1 else "s",
                    FEW_SEGMENTS)
    voice.save(args.out)
    log.info("wrote the voice %r to %s: %d segments, %.1f s of speech, for model %s (use it: --voice %s)",
             voice.name, args.out, voice.segments, voice.speech_s, voice.model, args.out)
    return 0


def cmd_listen(args: argparse.Namespace, stopper: Stopper) -> int:
    import time

    from serstream.client import DEFAULT_CONNECT
    from serstream.events import EMOTION_TOPIC, STATS_TOPIC, Message
    from serstream.render import Printer

    stopper.what = "stopping"
    problems = [p for p in (
        LISTEN_TIMEOUT.problem("timeout", args.timeout),
        LISTEN_COUNT.problem("count", args.count),
    ) if p]
    if problems:
        raise _flag_error(ValueError("; ".join(problems)))
    topics = (EMOTION_TOPIC, STATS_TOPIC) if args.stats else (EMOTION_TOPIC,)
    printer = Printer(as_json=args.json, stats=args.stats)
    sub = _subscriber(args, topics)
    seen = received = 0
    log.info("listening to %s; Ctrl-C to stop", ", ".join(args.connect or [DEFAULT_CONNECT]))
    idle_until = None if args.timeout is None else time.monotonic() + args.timeout
    said: dict[str, str] = {}  # endpoint -> the link problem last reported for it
    timed_out = False
    with sub:
        while not stopper.event.is_set():
            ev = sub.recv(timeout=0.2)  # short, so that a signal is seen at once
            if ev is None:
                for endpoint, why in sub.links.problems(after=LINK_PATIENCE_S).items():
                    if said.get(endpoint) != why:
                        log.warning("%s: %s", endpoint, why)
                        said[endpoint] = why
                if idle_until is not None and time.monotonic() >= idle_until:
                    timed_out = True
                    break
                continue
            received += 1
            if idle_until is not None:
                idle_until = time.monotonic() + args.timeout
            topic = ev.pop("topic")
            printer(Message.of(topic, ev))
            if topic == EMOTION_TOPIC:
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
        if sub.gaps:
            log.warning("lost %d messages in %d gaps", sub.lost, sub.gaps)
        problems = sub.links.problems(after=0)
    if args.count is not None and seen < args.count:
        log.error("received %d of %d events before %s%s", seen, args.count,
                  "being stopped" if stopper.event.is_set() else "timing out", _link_text(problems))
        return 1
    if timed_out and received == 0:
        log.error("nothing received in %g s%s", args.timeout, _link_text(problems))
        return 1
    return 0


LINK_PATIENCE_S = 3.0  # how long listen waits for a working link before saying what is wrong


def _link_text(problems: dict[str, str]) -> str:
    return "".join(f"; {endpoint}: {why}" for endpoint, why in problems.items())


def cmd_view(args: argparse.Namespace, stopper: Stopper) -> int:
    from serstream.client import DEFAULT_CONNECT
    from serstream.events import EMOTION_TOPIC, STATS_TOPIC
    from serstream.view import ViewConfig
    from serstream.view.server import ViewServer

    stopper.what = "stopping"
    try:
        config = ViewConfig(http=args.http, history_s=args.history * 60)
    except ValueError as exc:
        raise UserError(f"--{exc}") from None
    with _subscriber(args, (EMOTION_TOPIC, STATS_TOPIC)) as sub:
        server = ViewServer(sub, config)
        log.info("view of %s on %s ; Ctrl-C to stop", ", ".join(args.connect or [DEFAULT_CONNECT]), server.url)
        server.serve(stopper.event)
    return 0


def cmd_proxy(args: argparse.Namespace, stopper: Stopper) -> int:
    from serstream.proxy import Proxy, ProxyConfig
    from serstream.security import CurveClient

    stopper.what = "stopping"
    if (args.daemon_key is None) != (args.daemon_secret is None):
        raise UserError("encrypted daemons need both --daemon-key and --daemon-secret")
    upstream = tuple(CurveClient(key, args.daemon_secret) for key in args.daemon_key or ())
    try:
        config = ProxyConfig(connect=tuple(args.connect), publish=_publish_config(args), upstream=upstream)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    counts = Proxy(config).run(stopper.event)
    if counts:
        log.info("forwarded %d messages from %d daemons", counts["from_daemons"], len(args.connect))
    return 0


def cmd_devices(args: argparse.Namespace, stopper: Stopper) -> int:
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


INFO_WIDTH = 200  # characters of a value on one line of `info`; --json has everything


def _clipped(text: str, width: int = INFO_WIDTH) -> str:
    """``text`` cut to ``width`` characters with a visible mark saying so."""
    if len(text) <= width:
        return text
    return f"{text[: width - 24]}… (+{len(text) - width + 24} chars, see --json)"


def _info_shipped(as_json: bool) -> int:
    """The shipped models, what each costs here and how accurate it was on test speakers."""
    from serstream import catalog
    from serstream.model import EmotionModel

    rows = []
    for shipped in catalog.CATALOG:
        path = shipped.path
        entry: dict[str, Any] = {"name": shipped.name, "default": shipped.name == catalog.DEFAULT,
                                 "summary": shipped.summary, "path": str(path)}
        if path.is_file():
            model = EmotionModel(path, threads=1)
            entry |= {"model_id": model.model_id, "size_bytes": path.stat().st_size,
                      "ms_per_3s_segment_here": round(catalog.cost_ms(model), 1),
                      "adapts_to_voice": model.adapts,
                      "test_accuracy": {c: m.get("accuracy") for c, m in
                                        model.meta.provenance.get("test_metrics", {}).items()}}
        else:
            entry["missing"] = True
        rows.append(entry)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for e in rows:
        mark = " (default)" if e["default"] else ""
        if e.get("missing"):
            print(f"{e['name']}{mark}: missing from this installation ({e['path']})")
            continue
        acc = ", ".join(f"{c} {a:.0%}" for c, a in e["test_accuracy"].items())
        print(f"{e['name']}{mark}: {e['summary']}")
        print(f"    {e['size_bytes'] / 1e6:.1f} MB, {e['ms_per_3s_segment_here']:.0f} ms per 3 s segment on this "
              f"machine (one thread); test speakers: {acc}"
              + ("; adapts to an enrolled voice (serstream enrol)" if e["adapts_to_voice"] else ""))
    print("details: serstream info NAME; choose one: --model NAME (or a path to an ONNX file)")
    return 0


def cmd_info(args: argparse.Namespace, stopper: Stopper) -> int:
    from serstream.catalog import resolve
    from serstream.model import EmotionModel

    if args.model is None and not os.environ.get("SERSTREAM_MODEL"):
        return _info_shipped(args.json)
    path = resolve(args.model)
    model = EmotionModel(path)
    summary = model.meta.summary()
    summary["model_id"] = model.model_id
    summary["path"] = str(path)
    summary["size_bytes"] = path.stat().st_size
    summary["adapts_to_voice"] = model.adapts
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    feats = model.meta.features
    if feats.kind == "log_mel":
        layer = f"{feats.n_mels}-band log-mel"
    else:
        layer = f"{feats.n_mfcc} MFCC from {feats.n_mels} mels"
    rows = [
        ("model", model.model_id),
        ("file", f"{path} ({summary['size_bytes'] / 1e6:.2f} MB)"),
        ("labels", ", ".join(model.labels)),
        ("audio", f"{model.sample_rate} Hz mono"),
        ("features", f"{layer} (n_fft {feats.n_fft}, win {feats.win_length}, hop {feats.hop_length}, "
                     f"{feats.pad_mode} padding) + {feats.delta_order} delta orders = {feats.n_features} per frame"),
    ]
    rows.append(("voice", "adapts to an enrolled voice (serstream enrol, then --voice)" if model.adapts
                 else "judges every speaker against the average training voice (no voice head)"))
    if model.meta.max_frames:
        rows.append(("max_frames", f"{model.meta.max_frames} (longer segments are split into equal chunks)"))
    if model.meta.vad:
        rows.append(("vad", ", ".join(f"{k} {v}" for k, v in model.meta.vad.to_dict().items())))
    for key, value in model.meta.provenance.items():
        # one line per entry of a nested document, so no figure hides past the edge
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub_key, v in items:
            text = v if isinstance(v, str) else json.dumps(v)
            if "\n" in text:  # a licence text: its first line, the rest under --json
                text = f"{text.splitlines()[0]} (+{len(text.splitlines()) - 1} lines, see --json)"
            rows.append((key if sub_key is None else f"{key}.{sub_key}", text))
    width = max(len(k) for k, _ in rows)
    for key, text in rows:
        print(f"{key:<{width}}  {_clipped(text)}")
    return 0


def cmd_keys(args: argparse.Namespace, stopper: Stopper) -> int:
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
    "enrol": cmd_enrol,
    "listen": cmd_listen,
    "view": cmd_view,
    "proxy": cmd_proxy,
    "devices": cmd_devices,
    "info": cmd_info,
    "keys": cmd_keys,
}


def _subcommand(name: str, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    (sub,) = [a for a in (parser or build_parser())._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def _with_config(parser: argparse.ArgumentParser, argv: list[str] | None, path: Path) -> argparse.Namespace:
    """The arguments again, with ``path``'s settings as the defaults the flags override."""
    from serstream.config_file import load

    run = _subcommand("run", parser)
    run.set_defaults(**load(path, run))
    return parser.parse_args(argv)


def _leave_now(rc: int) -> None:
    """Exit without the interpreter's teardown. Stopped by a signal, everything of ours
    is already closed and flushed (sockets lingered, the last line printed); what is
    left is freeing memory the kernel frees anyway, and with ONNX Runtime and numba
    loaded that took 0.3-0.9 s here: too much of the 2 s a stop may take."""
    sys.stderr.flush()
    logging.shutdown()
    os._exit(rc)


def main(argv: list[str] | None = None, stopper: Stopper | None = None) -> int:
    from serstream import logs

    if stopper is None:
        stopper = Stopper()
        stopper.install()
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    try:
        if getattr(args, "config", None) is not None:
            args = _with_config(parser, argv, args.config)
            logs.setup(args.log_level, args.log_format)
        rc = COMMANDS[args.command](args, stopper)
        stopper.finished(rc)
        # done and on the way out: a late Ctrl-C must not turn a clean exit into a crash
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        sys.stdout.flush()
        if stopper.stopping:
            _leave_now(rc)
        return rc
    except BrokenPipeError:
        # stdout was closed by its reader (`serstream info | head -1`): nothing more to
        # say to it. Point stdout at /dev/null so the interpreter's own flush at exit
        # cannot fail on the same pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UserError as exc:
        if args.log_level == "debug":
            log.exception("details")
        logs.error_line(str(exc), args.log_format)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # last resort: one line, traceback only on request
        if args.log_level == "debug":
            log.exception("unexpected error")
        first = str(exc).splitlines()[0] if str(exc) else ""
        logs.error_line(f"unexpected {type(exc).__name__}: {first} (run with --log-level debug for details)",
                        args.log_format)
        return 1


if __name__ == "__main__":
    sys.exit(main())

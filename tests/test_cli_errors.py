"""Bad input: one clear line on stderr, a non-zero exit, no traceback, no hang,
and replay carries on with the good files."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import soundfile as sf

from procs import EXAMPLES, assert_one_line_error, free_endpoint, serstream
from tiny_model import build, metadata, mutate


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.wav").write_bytes(b"")
    (d / "random.wav").write_bytes(np.random.default_rng(1).bytes(5000))
    good = (EXAMPLES / sorted(p.name for p in EXAMPLES.glob("*.wav"))[0]).read_bytes()
    (d / "truncated.wav").write_bytes(good[:30])
    sf.write(d / "zero_frames.wav", np.zeros((0, 1), np.float32), 16000)
    (d / "notes.txt").write_text("not audio at all\n")
    return d


def test_replay_reports_each_bad_file_and_keeps_going(tiny, bad_files):
    good = sorted(EXAMPLES.glob("*.wav"))[:2]
    bad = [bad_files / n for n in ("empty.wav", "random.wav", "truncated.wav", "zero_frames.wav",
                                   "notes.txt", "missing.wav")]
    r = serstream("replay", "--model", tiny, "--no-publish", "--json", "--speed", "0",
                  good[0], *bad, good[1])
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    sources = {json.loads(x)["source"] for x in r.stdout.splitlines()}
    assert sources == {str(good[0]), str(good[1])}  # both good files fully processed
    for b in bad:
        lines = [ln for ln in r.stderr.splitlines() if str(b) in ln and "ERROR" in ln]
        assert lines, f"no error line for {b}:\n{r.stderr}"
    assert "6 of 8 files failed" in r.stderr


def test_replay_handles_stereo_and_odd_rates(tiny, tmp_path):
    y = sf.read(sorted(EXAMPLES.glob("*.wav"))[0])[0]
    st = tmp_path / "stereo_44k.wav"
    import soxr

    y44 = soxr.resample(y, 16000, 44100)
    sf.write(st, np.stack([y44, y44 * 0.5], axis=1), 44100, subtype="FLOAT")
    odd = tmp_path / "odd_11025.flac"
    sf.write(odd, soxr.resample(y, 16000, 11025), 11025)
    r = serstream("replay", "--model", tiny, "--no-publish", "--json", "--speed", "0", st, odd)
    assert r.returncode == 0, r.stderr
    finals = [json.loads(x) for x in r.stdout.splitlines() if json.loads(x)["final"]]
    assert {f["source"] for f in finals} == {str(st), str(odd)}


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing", "not found"),
        ("garbage", "not a loadable ONNX model"),
        ("no_metadata", "no 'serstream' metadata"),
        ("bad_json", "not valid JSON"),
        ("wrong_format", "format"),
        ("unknown_feature", "cannot reproduce"),
        ("bad_window", "cannot reproduce"),
        ("few_labels", "labels"),
        ("wrong_input_width", "features per frame"),
        ("wrong_classes", "classes"),
        ("bad_norm", "normalisation"),
        # graphs that cannot serve, refused from their declarations (before: all zeros, or a
        # cut-off "unexpected InvalidArgument" on the first segment)
        ("int64_output", "output is tensor(int64)"),
        ("fixed_time_axis", "time axis is fixed at 100 frames"),
        ("fixed_batch_axis", "batch axis is fixed at 2"),
        # extreme or mistyped metadata, each with its reason
        ("min_frames_1e9", "min_frames"),
        ("min_frames_huge", "min_frames"),
        ("max_speech_1e10", "max_speech_ms"),
        ("hangover_string", "hangover_ms must be an integer"),
        ("unknown_vad_key", "unknown VAD settings ['pre_roll_ms']"),
        ("vad_not_object", "VAD settings must be an object"),
        ("hop_fraction", "hop_length must be an integer"),
        ("hop_bool", "hop_length must be an integer"),
        ("n_fft_2_20", "n_fft must be even and in [16, 16384]"),
        ("sample_rate_float", "sample_rate must be an integer"),
        ("model_id_number", "model_id"),
        ("label_too_long", "labels"),
        ("unknown_key", "unknown keys ['extra']"),
    ],
)
def test_bad_model_is_refused(tmp_path, case, needle):
    meta = metadata()
    path = tmp_path / f"{case}.onnx"
    if case == "garbage":
        path.write_bytes(b"\x00not an onnx model" * 10)
    elif case == "no_metadata":
        build(path, meta_json=None)
        import onnx

        m = onnx.load(str(path))
        del m.metadata_props[:]
        onnx.save(m, str(path))
    elif case == "bad_json":
        build(path, meta_json="{not json")
    elif case == "wrong_format":
        build(path, meta_json=mutate(meta, format=99))
    elif case == "unknown_feature":
        build(path, meta_json=mutate(meta, **{"features.pre_emphasis": 0.97}))
    elif case == "bad_window":
        build(path, meta_json=mutate(meta, **{"features.window": "hamming"}))
    elif case == "few_labels":
        build(path, meta_json=mutate(meta, labels=["only"]))
    elif case == "wrong_input_width":
        build(path, meta, n_features=13)
    elif case == "wrong_classes":
        build(path, meta, n_labels=7)
    elif case == "bad_norm":
        build(path, meta_json=mutate(meta, **{"normalisation.std": [0.0] * 120}))
    elif case == "int64_output":
        build(path, metadata(output_kind="logits"), head="int64")  # softmax of zeros looked like an answer
    elif case == "fixed_time_axis":
        build(path, meta, time_axis=100)
    elif case == "fixed_batch_axis":
        build(path, meta, batch_axis=2)
    elif case != "missing":
        changes = {
            "min_frames_1e9": {"min_frames": 1e9}, "min_frames_huge": {"min_frames": 10**9},
            "max_speech_1e10": {"vad.max_speech_ms": 10**10}, "hangover_string": {"vad.hangover_ms": "450"},
            "unknown_vad_key": {"vad.pre_roll_ms": 100}, "vad_not_object": {"vad": "webrtc"},
            "hop_fraction": {"features.hop_length": 160.5}, "hop_bool": {"features.hop_length": True},
            "n_fft_2_20": {"features.n_fft": 2**20}, "sample_rate_float": {"sample_rate": 16000.0},
            "model_id_number": {"model_id": 123}, "label_too_long": {"labels": ["x" * 201, "neutral"]},
            "unknown_key": {"extra": 1},
        }[case]
        build(path, meta_json=mutate(meta, **changes))
    clip = sorted(EXAMPLES.glob("*.wav"))[0]
    for cmd in (["info", path], ["replay", "--model", path, "--no-publish", clip]):
        r = serstream(*cmd)
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert_one_line_error(r.stderr, needle)


def test_a_model_at_a_rate_the_vad_cannot_take_is_refused(tmp_path):
    """The rates are WebRTC VAD's own list (serstream.vad.VAD_RATES), named in the error."""
    from serstream.features import FeatureConfig
    from serstream.vad import VAD_RATES

    path = build(tmp_path / "22k.onnx", metadata(FeatureConfig(sr=22050)))
    r = serstream("info", path)
    assert r.returncode == 2, r.stdout
    assert_one_line_error(r.stderr, "22050 Hz is not one WebRTC VAD supports", ", ".join(map(str, VAD_RATES)))


def test_busy_port(tiny):
    ep = free_endpoint()
    host, port = ep[len("tcp://"):].split(":")
    with socket.socket() as s:
        s.bind((host, int(port)))
        s.listen()
        r = serstream("replay", "--model", tiny, "--bind", ep, "--speed", "0",
                      sorted(EXAMPLES.glob("*.wav"))[0])
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "address already in use")


def test_unknown_device(tiny):
    r = serstream("run", "--model", tiny, "--device", "no-such-microphone-xyz", "--bind", free_endpoint())
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "no input device matches 'no-such-microphone-xyz'")
    assert r.stderr.lower().count("no-such-microphone-xyz") == 1, r.stderr  # said once, not twice


def test_absent_audio_device(tiny):
    """No usable input device: the sound server is gone (as on a headless box)."""
    env = {"PULSE_SERVER": "unix:/nonexistent"}
    r = serstream("run", "--model", tiny, "--bind", free_endpoint(), env=env)
    assert r.returncode == 2, r.stderr
    assert_one_line_error(r.stderr, "no audio input device")
    r = serstream("devices", env=env)
    assert r.returncode == 2, r.stderr
    assert_one_line_error(r.stderr, "no audio input devices")


@pytest.mark.parametrize("args, needle", [
    (["--speed", "-1"], "--speed"),
    (["--vad-frame-ms", "25"], "invalid choice"),
    (["--max-speech-ms", "10"], "invalid VAD settings"),
    (["--speech-pad-ms", "3000"], "--speech-pad-ms must be in [0, hangover_ms]"),  # with the model's hangover
])
def test_bad_options(tiny, args, needle):
    r = serstream("replay", "--model", tiny, "--no-publish", *args, sorted(EXAMPLES.glob("*.wav"))[0])
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("command, args, needle", [
    ("replay", ["--hangover-ms", "999999999"], "--hangover-ms must be in [10, 10000] ms"),
    ("replay", ["--max-speech-ms", "10000000000"], "--max-speech-ms must be in [100, 120000] ms"),
    ("replay", ["--hwm", "99999999999"], "--hwm must be in [1, 1000000]"),
    ("replay", ["--threads", "100000"], "--threads must be in [1, "),
    ("replay", ["--threads", "0"], "--threads must be in [1, "),
    ("replay", ["--stats-interval", "nan"], "--stats-interval must be a finite number"),
    ("replay", ["--stats-interval", "0"], "--stats-interval must be in [0.05, 3600] s"),
    ("replay", ["--speed", "inf"], "--speed must be a finite number"),
    ("replay", ["--min-level-dbfs", "5"], "--min-level-dbfs must be in [-120, 0] dBFS"),
    ("replay", ["--noise-margin-db", "-1"], "--noise-margin-db must be in [0, 40] dB"),
    ("replay", ["--wait-subscriber", "-1"], "--wait-subscriber must be in [0, 86400] s"),
    ("run", ["--channels", "100000"], "--channels must be in [1, 64]"),
    ("run", ["--samplerate", "1"], "--samplerate must be in [8000, 384000] Hz"),
    ("run", ["--blocksize", "-5"], "--blocksize must be in [0, 65536]"),
    ("listen", ["--timeout", "inf"], "--timeout must be a finite number"),
    ("listen", ["--count", "0"], "--count must be in [1, "),
])
def test_extreme_values_are_refused_in_one_line(tiny, command, args, needle):
    """Each number a flag takes is typed and bounded before anything is loaded or opened
    (before: an OverflowError, a 16 GB thread pool that ignored SIGTERM, silence)."""
    extra = {"replay": ["--model", tiny, "--no-publish", sorted(EXAMPLES.glob("*.wav"))[0]],
             "run": ["--model", tiny, "--bind", free_endpoint()], "listen": ["--connect", free_endpoint()]}[command]
    r = serstream(command, *args, *extra)
    assert r.returncode == 2, r.stderr
    assert_one_line_error(r.stderr, needle)
    assert "INFO" not in r.stderr  # refused before the model was even loaded


def test_threads_are_bounded_by_the_cpus_this_process_may_use(tiny):
    """Pinned to one CPU (as ``taskset`` or a container's cpuset does), two ONNX Runtime
    threads would only take turns: the bound is the CPUs allowed, not the machine's."""
    wav = sorted(EXAMPLES.glob("*.wav"))[0]
    one_cpu = min(os.sched_getaffinity(0))
    r = serstream("replay", "--model", tiny, "--no-publish", "--threads", "2", wav,
                  preexec_fn=lambda: os.sched_setaffinity(0, {one_cpu}))
    assert r.returncode == 2, r.stderr
    assert_one_line_error(r.stderr, "--threads must be in [1, 1]")


def test_help_states_the_limits_it_enforces():
    from serstream.cli import build_parser
    from serstream.limits import limits_text
    from serstream.publish import PublishConfig
    from serstream.vad import VadConfig

    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    text = " ".join(sub.choices["replay"].format_help().split())  # argparse wraps lines
    for name in ("speech_pad_ms", "hangover_ms", "min_speech_ms", "max_speech_ms", "partial_interval_ms",
                 "min_level_dbfs", "noise_margin_db"):
        assert limits_text(VadConfig, name) in text, name
    assert limits_text(PublishConfig, "hwm") in text


@pytest.mark.parametrize("case, needle", [
    ("logits_as_probabilities", "not probabilities"),
    ("nan", "is not 4 finite numbers"),
])
def test_a_model_that_answers_nonsense_is_refused_at_load(tmp_path, case, needle):
    """What a graph's declarations cannot show, its answer on a short test input does."""
    path = tmp_path / f"{case}.onnx"
    if case == "logits_as_probabilities":
        build(path, head="logits")  # metadata says probabilities (confidence 19.6, negative ones)
    else:
        build(path, fill=float("nan"))
    r = serstream("replay", "--model", path, "--no-publish", "--json", sorted(EXAMPLES.glob("*.wav"))[0])
    assert r.returncode == 2 and r.stdout == ""
    assert_one_line_error(r.stderr, "refused", needle)


def test_a_model_that_breaks_on_real_segments_is_counted_and_the_daemon_goes_on(tmp_path):
    """Fine on the test input at load, NaN on every segment longer than 1.5 s: those are
    counted (stats errors) and skipped, said once (not once a segment), NaN never reaches
    the JSON, the shorter segments and every file still go through, exit 0."""
    path = build(tmp_path / "fragile.onnx", nan_after_frames=150)
    clips = sorted(EXAMPLES.glob("*.wav"))
    r = serstream("replay", "--model", path, "--no-publish", "--json", "--stats", "--speed", "0",
                  "--partial-interval-ms", "1000", *clips)
    assert r.returncode == 0, r.stderr

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in the JSON")

    messages = [json.loads(x, parse_constant=refuse) for x in r.stdout.splitlines()]
    emotion = [m for m in messages if m["type"] == "emotion"]
    stats = [m for m in messages if m["type"] == "stats"]
    assert emotion and all(m["end"] - m["start"] <= 1.5 + 0.01 for m in emotion)  # only what it could answer
    assert {m["source"] for m in stats} == {str(c) for c in clips}  # every file went through
    errors = stats[-1]["errors"]  # one pipeline for every file: its counters go on
    assert errors >= len(clips)  # each clip has speech longer than 1.5 s
    said = [ln for ln in r.stderr.splitlines() if "could not be classified" in ln]
    assert len(said) == 1, r.stderr
    assert f"{errors} segments not classified" in r.stderr


def test_info_shows_labels_and_features(tiny):
    r = serstream("info", tiny, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["labels"] == ["neutral", "happy", "sad", "angry"]
    assert info["features"]["n_mfcc"] == 40

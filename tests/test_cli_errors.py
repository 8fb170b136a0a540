"""Bad input: one clear line on stderr, a non-zero exit, no traceback, no hang,
and replay carries on with the good files."""

from __future__ import annotations

import json
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
])
def test_bad_options(tiny, args, needle):
    r = serstream("replay", "--model", tiny, "--no-publish", *args, sorted(EXAMPLES.glob("*.wav"))[0])
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr


def test_info_shows_labels_and_features(tiny):
    r = serstream("info", tiny, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["labels"] == ["neutral", "happy", "sad", "angry"]
    assert info["features"]["n_mfcc"] == 40

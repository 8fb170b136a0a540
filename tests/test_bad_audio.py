"""Replay fed every kind of audio a user might have, and the VAD/feature path fed
random signals: each file works or fails with one clear line, never killing the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import soxr
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procs import EXAMPLES, free_endpoint, serstream, spawn
from serstream.decode import load_audio
from serstream.features import FeatureConfig, FeatureExtractor
from serstream.vad import Segmenter, VadConfig


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(EXAMPLES / "angry_cremad_1001_DFA_ANG_XX.wav").samples


def _variants(d, y):
    """(file, expected to work) for formats, rates, channels and damaged samples."""
    out = []
    for sr in (8000, 11025, 22050, 44100, 48000, 96000):
        p = d / f"rate_{sr}.wav"
        sf.write(p, soxr.resample(y, 16000, sr), sr)
        out.append((p, True))
    for ch in (1, 2, 3, 6, 8):
        p = d / f"ch_{ch}.flac"
        sf.write(p, np.repeat(y[:, None], ch, axis=1) * 0.5, 16000)
        out.append((p, True))
    for subtype in ("PCM_U8", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        p = d / f"{subtype}.wav"
        sf.write(p, y, 16000, subtype=subtype)
        out.append((p, True))
    z = y.copy()
    z[1000:1100] = np.nan
    z[5000:5010] = np.inf
    p = d / "nan_inf.wav"
    sf.write(p, z, 16000, subtype="FLOAT")
    out.append((p, True))
    p = d / "clipping.wav"
    sf.write(p, np.clip(y * 40, -4, 4), 16000, subtype="FLOAT")
    out.append((p, True))
    p = d / "all_nan.wav"
    sf.write(p, np.full(4000, np.nan, np.float32), 16000, subtype="FLOAT")
    out.append((p, False))
    p = d / "ogg_vorbis.ogg"
    sf.write(p, y, 16000, format="OGG", subtype="VORBIS")
    out.append((p, True))
    good = (d / "rate_8000.wav").read_bytes()
    for name, data in (("truncated_header.wav", good[:20]), ("random.flac", np.random.default_rng(3).bytes(3000)),
                       ("zero.wav", b"")):
        (d / name).write_bytes(data)
        out.append((d / name, False))
    p = d / "tiny_1_sample.wav"
    sf.write(p, y[:1], 16000)
    out.append((p, True))
    return out


def test_replay_survives_every_variant(tiny, tmp_path, speech):
    variants = _variants(tmp_path, speech)
    r = serstream("replay", "--model", tiny, "--no-publish", "--json", "--speed", "0",
                  *[p for p, _ in variants], timeout=180)
    assert "Traceback" not in r.stderr
    assert r.returncode == 1  # some files are bad by design
    finals = {json.loads(x)["source"] for x in r.stdout.splitlines() if json.loads(x)["final"]}
    for path, ok in variants:
        errors = [ln for ln in r.stderr.splitlines() if str(path) in ln and "ERROR" in ln]
        if ok:
            assert not errors, errors
            if path.name != "tiny_1_sample.wav":  # one sample holds no speech
                assert str(path) in finals, f"no final event for {path.name}"
        else:
            assert len(errors) >= 1, f"{path.name} failed silently"
    n_bad = sum(1 for _, ok in variants if not ok)
    assert f"{n_bad} of {len(variants)} files failed" in r.stderr


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=1, max_value=16000 * 3),
    amp=st.floats(min_value=0.0, max_value=50.0),
    kind=st.sampled_from(["noise", "tone", "impulses", "dc", "silence"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_vad_and_features_on_arbitrary_signals(n, amp, kind, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    y = {
        "noise": rng.standard_normal(n),
        "tone": np.sin(2 * np.pi * rng.uniform(50, 7000) * t),
        "impulses": (rng.random(n) > 0.999).astype(float),
        "dc": np.ones(n),
        "silence": np.zeros(n),
    }[kind] * amp
    y = np.clip(y, -1, 1).astype(np.float32)  # what decode hands on
    seg = Segmenter(VadConfig(partial_interval_ms=500, max_speech_ms=1500), 16000)
    fl = seg.frame_length
    events = []
    padded = np.zeros(-(-n // fl) * fl, np.float32)
    padded[:n] = y
    for i in range(0, padded.size, fl):
        events += seg.process(padded[i : i + fl])
    events += seg.flush()
    fx = FeatureExtractor(FeatureConfig())
    finals = [e for e in events if e.final]
    for e in events:
        assert 0 <= e.start < e.end <= padded.size
        assert e.audio.shape == (e.end - e.start,)
        assert e.end - e.start <= 16000 * 1.5 + fl  # max_speech_ms holds
        f = fx(e.audio)
        assert f.shape == (fx.n_frames(e.audio.size), 120) and np.isfinite(f).all()
    assert [e.index for e in finals] == list(range(len(finals)))
    f = fx(y)
    assert np.isfinite(f).all()


def test_listen_reports_and_skips_malformed_messages():
    ep = free_endpoint()
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.bind(ep)
    listener = spawn("listen", "--connect", ep, "--json", "--count", "2", "--timeout", "20")
    assert pub.poll(20000, zmq.POLLIN), "listen never subscribed"
    pub.recv()
    good = {"type": "emotion", "seq": 0, "session": "s", "label": "sad", "final": True}
    pub.send_multipart([b"emotion", json.dumps(good).encode()])
    pub.send_multipart([b"emotion", b"\xff\xfe not json"])
    pub.send_multipart([b"emotion", b"x" * (2 << 20)])
    pub.send_multipart([b"emotion", b"1", b"2"])
    pub.send_multipart([b"emotion", json.dumps({**good, "seq": 1, "label": "angry"}).encode()])
    out, err = listener.communicate(timeout=30)
    pub.close(0)
    assert listener.returncode == 0, err
    assert [json.loads(x)["label"] for x in out.splitlines()] == ["sad", "angry"]
    assert err.count("skipped a message") == 3 and "Traceback" not in err

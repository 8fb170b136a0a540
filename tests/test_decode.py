"""serstream.decode.load_audio: every format, rate, width and channel count a user may
have gives 16 kHz mono float32; every broken file gives one AudioFileError line naming it."""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio import CORPORA, SR, clip_path, speech_clip
from serstream.decode import load_audio
from serstream.errors import AudioFileError


def _ok(d, n: int | None = None) -> None:
    """Decoded audio as promised: 16 kHz mono float32, finite. (Full scale is checked by
    the tests about clipping, so that one defect fails one test.)"""
    y = d.samples
    assert y.dtype == np.float32 and y.ndim == 1 and y.size > 0 and y.flags.c_contiguous
    assert d.sr == SR and np.isfinite(y).all()
    if n is not None:
        assert y.size == n


def _fails_with_one_line(path: Path) -> str:
    with pytest.raises(AudioFileError) as info:
        load_audio(path)
    msg = str(info.value)
    assert path.name in msg, msg
    assert "\n" not in msg and "\r" not in msg and msg.strip() == msg and len(msg) < 400, repr(msg)
    return msg


@pytest.fixture(scope="module")
def y() -> np.ndarray:
    """A real SAVEE clip, 16 kHz mono float32 (as read by soundfile)."""
    return np.array(speech_clip("savee"))


@pytest.mark.parametrize("corpus", CORPORA)
def test_real_corpus_clips(corpus):
    """RAVDESS/SAVEE are FLAC, CREMA-D/TESS Ogg/Opus: decoded as soundfile reads them."""
    path = clip_path(corpus)
    d = load_audio(path)
    _ok(d)
    ref = speech_clip(corpus)
    assert (d.source_sr, d.source_channels, d.non_finite) == (SR, 1, 0)
    np.testing.assert_allclose(d.samples, np.clip(ref, -1, 1), atol=1e-7)
    assert d.duration == pytest.approx(ref.size / SR)


@pytest.mark.parametrize("fmt,subtype,atol", [
    ("WAV", "PCM_16", 1e-7), ("FLAC", "PCM_16", 1e-7), ("OGG", "VORBIS", None), ("OGG", "OPUS", None),
])
def test_wav_flac_ogg(tmp_path, y, fmt, subtype, atol):
    path = tmp_path / f"clip.{'ogg' if fmt == 'OGG' else fmt.lower()}"
    sf.write(path, y, SR, format=fmt, subtype=subtype)
    d = load_audio(path)
    _ok(d)
    if atol is not None:  # lossless
        np.testing.assert_allclose(d.samples, y, atol=atol)
    else:  # lossy: same length and the same waveform, give or take the codec
        assert abs(d.samples.size - y.size) <= 480
        n = min(d.samples.size, y.size)
        assert np.corrcoef(d.samples[:n], y[:n])[0, 1] > 0.9


@pytest.mark.parametrize("channels", range(1, 9))
def test_channels_are_averaged_to_mono(tmp_path, y, channels):
    gains = np.linspace(1.0, -0.5, channels)
    x = (y[:, None] * gains[None, :] * 0.9).astype(np.float32)
    path = tmp_path / f"ch{channels}.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    d = load_audio(path)
    _ok(d, y.size)
    assert d.source_channels == channels
    np.testing.assert_allclose(d.samples, x.mean(axis=1), atol=1e-6)


def test_stereo_with_opposite_channels_cancels(tmp_path, y):
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([y, -y], axis=1), SR, subtype="FLOAT")
    d = load_audio(path)
    assert d.source_channels == 2 and np.abs(d.samples).max() == 0.0


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000, 96000])
def test_other_rates_are_resampled_to_16k(tmp_path, y, rate):
    x = soxr.resample(y, SR, rate)
    path = tmp_path / f"r{rate}.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    d = load_audio(path)
    _ok(d)
    assert d.source_sr == rate
    assert abs(d.samples.size - x.size * SR / rate) <= 1  # duration kept to a sample
    assert abs(d.samples.size - y.size) <= 2
    n = min(d.samples.size, y.size)
    if rate >= SR:  # nothing above 8 kHz was lost: back to the same waveform
        np.testing.assert_allclose(d.samples[:n], y[:n], atol=0.02)
    assert np.corrcoef(d.samples[:n], y[:n])[0, 1] > 0.95


@pytest.mark.parametrize("subtype,atol", [
    ("PCM_U8", 1 / 64), ("PCM_16", 1 / 32768), ("PCM_24", 1e-6), ("PCM_32", 1e-7),
    ("FLOAT", 0.0), ("DOUBLE", 0.0),
])
def test_sample_widths(tmp_path, y, subtype, atol):
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, y, SR, subtype=subtype)
    assert sf.info(path).subtype == subtype
    d = load_audio(path)
    _ok(d, y.size)
    np.testing.assert_allclose(d.samples, y, atol=atol)


def test_nan_and_inf_are_replaced_and_counted(tmp_path, y):
    x = y.copy()
    x[100:110] = np.nan
    x[200] = np.inf
    x[300] = -np.inf
    path = tmp_path / "nonfinite.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    d = load_audio(path)
    _ok(d, y.size)
    assert d.non_finite == 12
    assert (d.samples[100:110] == 0).all() and d.samples[200] == 0 and d.samples[300] == 0
    np.testing.assert_array_equal(d.samples[400:], y[400:])


def test_all_nan_file_is_refused(tmp_path):
    path = tmp_path / "allnan.wav"
    sf.write(path, np.full(1000, np.nan, np.float32), SR, subtype="FLOAT")
    assert "NaN" in _fails_with_one_line(path)


def test_values_beyond_full_scale_are_clipped(tmp_path, y):
    x = y * 4.0
    x[1000] = 1e6
    x[1001] = -3.5
    path = tmp_path / "loud.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    d = load_audio(path)
    _ok(d, y.size)
    assert np.abs(d.samples).max() == 1.0
    assert d.samples[1000] == 1.0 and d.samples[1001] == -1.0
    np.testing.assert_allclose(d.samples, np.clip(x, -1, 1), atol=1e-7)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_resampled_output_stays_within_full_scale(tmp_path, y, rate):
    """DecodedAudio.samples is documented "in [-1, 1] after sanitising"; a loud file at
    another rate (speech at 4x gain, clipped by the recorder) must not overshoot once resampled."""
    x = np.clip(soxr.resample(y, SR, rate) * 4.0, -1.0, 1.0)
    path = tmp_path / f"loud{rate}.wav"
    sf.write(path, x, rate, subtype="FLOAT")
    d = load_audio(path)
    _ok(d)
    assert np.abs(d.samples).max() <= 1.0, f"peak {np.abs(d.samples).max()!r} after resampling from {rate} Hz"


def test_a_file_shorter_than_one_output_sample_is_refused_or_decoded(tmp_path):
    path = tmp_path / "one.wav"
    sf.write(path, np.full(1, 0.5, np.float32), 96000, subtype="FLOAT")
    try:
        d = load_audio(path)
    except AudioFileError as exc:
        assert "one.wav" in str(exc) and "\n" not in str(exc)
    else:
        _ok(d)


# --------------------------------------------------------------------------- broken files


def _wav_bytes(y: np.ndarray, sr: int = SR) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.wav"
        sf.write(p, y, sr, subtype="PCM_16")
        return p.read_bytes()


def test_missing_file(tmp_path):
    assert "no such file" in _fails_with_one_line(tmp_path / "missing.wav")


def test_directory(tmp_path):
    d = tmp_path / "folder.wav"
    d.mkdir()
    _fails_with_one_line(d)


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.touch()
    _fails_with_one_line(p)


def test_random_bytes(tmp_path):
    p = tmp_path / "noise.wav"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    _fails_with_one_line(p)


def test_text_file_named_flac(tmp_path):
    p = tmp_path / "notes.flac"
    p.write_text("not audio\nat all\n")
    _fails_with_one_line(p)


@pytest.mark.parametrize("keep", [4, 12, 20, 36])
def test_truncated_header(tmp_path, y, keep):
    p = tmp_path / f"trunc{keep}.wav"
    p.write_bytes(_wav_bytes(y)[:keep])
    _fails_with_one_line(p)


def test_header_only_wav_with_zero_frames(tmp_path):
    p = tmp_path / "hollow.wav"
    sf.write(p, np.zeros(0, np.float32), SR)
    assert p.stat().st_size > 0 and sf.info(p).frames == 0
    _fails_with_one_line(p)


def test_truncated_data_gives_what_is_there(tmp_path, y):
    """A download cut short: the header promises more frames than the file holds."""
    data = _wav_bytes(y)
    p = tmp_path / "cut.wav"
    p.write_bytes(data[: 44 + 2 * 8000])  # header + first 8000 samples
    d = load_audio(p)
    _ok(d, 8000)
    np.testing.assert_allclose(d.samples, y[:8000], atol=1 / 32768)


def _riff(fmt_tag: int, channels: int, rate: int, bits: int, payload: bytes) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block & 0xFFFF, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture(scope="module")
def fuzz_dir():
    """One folder for every hypothesis example (function-scoped tmp_path is not reset between them)."""
    d = Path(tempfile.mkdtemp(prefix="serstream-fuzz-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


_headers = st.one_of(
    st.just(b""),
    st.just(b"RIFF"),
    st.just(b"RIFF\x24\x00\x00\x00WAVEfmt "),
    st.builds(lambda tag, ch, rate, bits: _riff(tag, ch, rate, bits, b"")[:44 - 8],  # no data chunk
              st.sampled_from([1, 3, 6, 7, 0xFFFE]), st.integers(0, 300), st.integers(0, 2**32 - 1),
              st.sampled_from([0, 8, 16, 24, 32, 64])),
    st.builds(lambda tag, ch, rate, bits: _riff(tag, ch, rate, bits, b"")[:-8],
              st.sampled_from([1, 3]), st.integers(1, 8),
              st.sampled_from([1, 7, 8000, 16000, 44100, 2**31 - 1]), st.sampled_from([8, 16, 24, 32])),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=_headers, payload=st.binary(max_size=1500), data_chunk=st.booleans())
def test_any_bytes_decode_or_fail_cleanly(fuzz_dir, header, payload, data_chunk):
    """Random bytes, bare or behind a (possibly absurd) RIFF/WAVE header: finite 16 kHz
    mono float32, or one AudioFileError line. Never another exception."""
    if header.startswith(b"RIFF") and len(header) > 12 and data_chunk:
        blob = header + b"data" + struct.pack("<I", len(payload)) + payload
    else:
        blob = header + payload
    p = fuzz_dir / "fuzz.wav"
    p.write_bytes(blob)
    try:
        d = load_audio(p)
    except AudioFileError as exc:
        assert "fuzz.wav" in str(exc) and "\n" not in str(exc)
    else:
        _ok(d)

"""serstream.features against librosa: same parameters, same numbers, any length."""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs import EXAMPLES
from serstream.decode import load_audio
from serstream.features import (
    FeatureConfig,
    FeatureConfigError,
    FeatureExtractor,
    mel_filterbank,
    mfcc,
)

ATOL = 1e-4  # measured worst case is ~4e-7 on MFCC values of magnitude ~100-600
PROJECT = dict(n_fft=512, hop_length=160, win_length=400, n_mels=64, n_mfcc=40)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return np.concatenate([load_audio(p).samples for p in sorted(EXAMPLES.glob("*.wav"))[:4]]).astype(np.float64)


def _librosa(y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_fft too large" for sub-frame inputs: computed anyway
        return librosa.feature.mfcc(y=y, sr=16000, **kw)


@pytest.mark.parametrize("params", [{}, PROJECT], ids=["librosa-defaults", "project"])
@pytest.mark.parametrize("n", [1, 100, 255, 256, 257, 511, 512, 513, 1601, 16000 * 3, 16000 * 10])
def test_mfcc_matches_librosa_across_lengths(speech, params, n):
    y = speech[:n] if n <= speech.size else np.resize(speech, n)
    ours = mfcc(y, sr=16000, **params)
    ref = _librosa(y, **params)
    assert ours.shape == ref.shape == (params.get("n_mfcc", 20), 1 + n // params.get("hop_length", 512))
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=0)


def test_unnormalised_mel_filters_match_librosa(speech):
    """FeatureConfig.norm=None is melspectrogram's norm=None (librosa's mfcc cannot set it)."""
    y = speech[: 16000 * 2]
    cfg = FeatureConfig(norm=None, delta_order=0)
    S = librosa.power_to_db(librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=512, hop_length=160, win_length=400, n_mels=64, norm=None))
    ref = librosa.feature.mfcc(S=S, n_mfcc=40)
    np.testing.assert_allclose(FeatureExtractor(cfg).mfcc(y), ref, atol=ATOL, rtol=0)


def test_no_top_db_clipping_matches_librosa(speech):
    y = speech[: 16000 * 2]
    S = librosa.power_to_db(librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=512, hop_length=160, win_length=400, n_mels=64), top_db=None)
    np.testing.assert_allclose(mfcc(y, top_db=None, **PROJECT), librosa.feature.mfcc(S=S, n_mfcc=40),
                               atol=ATOL, rtol=0)


def test_only_orthonormal_dct():
    with pytest.raises(FeatureConfigError):
        mfcc(np.zeros(100), norm=None)
    with pytest.raises(FeatureConfigError):
        mfcc(np.zeros(100), dct_type=3)


@pytest.mark.parametrize("variant", [
    dict(htk=True), dict(lifter=22), dict(fmin=60.0, fmax=7600.0),
    dict(n_fft=1024, hop_length=256, n_mels=40, n_mfcc=13),
])
def test_mfcc_variants_match_librosa(speech, variant):
    params = {**PROJECT, **variant}
    y = speech[: 16000 * 2]
    np.testing.assert_allclose(mfcc(y, sr=16000, **params), _librosa(y, **params), atol=ATOL, rtol=0)


def test_noise_and_quiet_input(speech):
    rng = np.random.default_rng(0)
    for y in (rng.standard_normal(8000) * 0.3, np.zeros(4000), speech[:8000] * 1e-4):
        np.testing.assert_allclose(mfcc(y, **PROJECT), _librosa(y, **PROJECT), atol=ATOL, rtol=0)


def test_extractor_stacks_librosa_deltas(speech):
    fx = FeatureExtractor(FeatureConfig())
    for n in (1, 500, 16000 * 3):
        y = speech[:n]
        m = _librosa(y, **PROJECT)
        ref = np.vstack([m, librosa.feature.delta(m, order=1, width=9, mode="nearest"),
                         librosa.feature.delta(m, order=2, width=9, mode="nearest")]).T
        got = fx(y)
        assert got.dtype == np.float32 and got.shape == ref.shape == (fx.n_frames(n), 120)
        np.testing.assert_allclose(got, ref, atol=1e-3, rtol=1e-5)  # float32 output


def test_mel_filterbank_matches_librosa():
    for kw in (dict(n_fft=512, n_mels=64), dict(n_fft=2048, n_mels=128, htk=True), dict(n_fft=512, n_mels=40, norm=None)):
        np.testing.assert_allclose(mel_filterbank(sr=16000, **kw), librosa.filters.mel(sr=16000, **kw), atol=1e-7)


@pytest.mark.parametrize("bad", [np.zeros(0), np.array([0.0, np.nan, 0.0]), np.zeros((2, 100)),
                                 np.zeros(100, dtype=np.int16)])
def test_bad_audio_raises_value_error(bad):
    with pytest.raises(ValueError):
        FeatureExtractor(FeatureConfig())(bad)


@pytest.mark.parametrize("change", [dict(n_fft=500), dict(window="hamming"), dict(center=False),
                                    dict(n_mfcc=80), dict(win_length=1024), dict(fmax=9000.0),
                                    dict(delta_order=3), dict(delta_width=4)])
def test_config_refuses_what_it_cannot_reproduce(change):
    with pytest.raises(FeatureConfigError):
        FeatureConfig(**change)


def test_config_round_trip_and_unknown_keys():
    cfg = FeatureConfig(n_mfcc=20, delta_order=1)
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(FeatureConfigError, match="unknown"):
        FeatureConfig.from_dict({**cfg.to_dict(), "pre_emphasis": 0.97})


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 20000), amp=st.floats(0, 1), seed=st.integers(0, 10**6))
def test_any_length_and_level_gives_finite_features(n, amp, seed):
    y = (np.random.default_rng(seed).standard_normal(n) * amp).astype(np.float32)
    f = FeatureExtractor(FeatureConfig())(np.clip(y, -1, 1))
    assert f.shape == (1 + n // 160, 120) and np.isfinite(f).all()

"""serstream.features against librosa: same parameters, same numbers, any length.

Parity is checked on float64 input: librosa computes a float32 signal in float32, which
would make the comparison measure librosa's rounding rather than ours.
"""

from __future__ import annotations

import json
import warnings

import librosa
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio import SR, noise, speech
from serstream.features import (
    FeatureConfig,
    FeatureConfigError,
    FeatureExtractor,
    log_mel_spectrogram,
    mel_filterbank,
    melspectrogram,
    mfcc,
)

# Measured worst case is ~4e-7 absolute on MFCC values of magnitude up to ~600 (float64
# rounding of the FFT); 1e-4 leaves room for other BLAS/FFT builds and still catches any
# real difference (a wrong window, pad, filter or dB floor moves values by >1e-2).
ATOL = 1e-4
RTOL = 1e-4
PROJECT = dict(n_fft=512, hop_length=160, win_length=400, n_mels=64, n_mfcc=40)
LENGTHS = [1, 100, 255, 256, 257, 511, 512, 513, 1601, 3 * SR, 10 * SR]


def _librosa_mfcc(y: np.ndarray, **kw) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_fft too large" for sub-frame inputs: computed anyway
        return librosa.feature.mfcc(y=y, sr=SR, **kw)


def _librosa_mel_mfcc(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """librosa's MFCC built from its layers, for settings ``librosa.feature.mfcc`` cannot
    pass through (the mel filter ``norm``)."""
    S = librosa.feature.melspectrogram(
        y=y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=cfg.htk, norm=cfg.norm, power=cfg.power)
    return librosa.feature.mfcc(S=librosa.power_to_db(S, top_db=cfg.top_db), n_mfcc=cfg.n_mfcc,
                                lifter=cfg.lifter)


def _librosa_features(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    m = _librosa_mel_mfcc(y, cfg)
    blocks = [m] + [librosa.feature.delta(m, order=k, width=cfg.delta_width, mode="nearest")
                    for k in range(1, cfg.delta_order + 1)]
    return np.vstack(blocks).T


def _signal(kind: str, n: int) -> np.ndarray:
    if kind == "speech":
        return speech(n / SR)
    return noise(n, 0.1, seed=n)


def _close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("kind", ["speech", "noise"])
@pytest.mark.parametrize("params", [{}, PROJECT], ids=["librosa-defaults", "project"])
@pytest.mark.parametrize("n", LENGTHS)
def test_mfcc_matches_librosa_across_lengths(kind, params, n):
    y = _signal(kind, n)
    ours = mfcc(y, sr=SR, **params)
    ref = _librosa_mfcc(y, **params)
    assert ours.shape == (params.get("n_mfcc", 20), 1 + n // params.get("hop_length", 512))
    _close(ours, ref)


def test_project_config_is_what_the_tests_call_project():
    c = FeatureConfig()
    assert (c.n_fft, c.hop_length, c.win_length, c.n_mels, c.n_mfcc) == (512, 160, 400, 64, 40)


@pytest.mark.parametrize("variant", [
    dict(htk=True),
    dict(lifter=22.0),
    dict(fmin=60.0, fmax=7600.0),
    dict(htk=True, fmin=133.33, fmax=6855.4976),
    dict(power=1.0),
    dict(n_fft=1024, hop_length=256, win_length=1024, n_mels=40, n_mfcc=13),
    dict(n_fft=256, hop_length=80, win_length=200, n_mels=40, n_mfcc=20),
    # the narrowest windows: scipy's 1-sample Hann is [1.0]; odd lengths centre off by a half
    dict(win_length=1), dict(win_length=2), dict(win_length=3), dict(win_length=511),
], ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()))
def test_mfcc_variants_match_librosa(variant):
    params = {**PROJECT, **variant}
    y = speech(2.0)
    _close(mfcc(y, sr=SR, **params), _librosa_mfcc(y, **params))


@pytest.mark.parametrize("variant", [
    dict(), dict(norm=None), dict(htk=True), dict(htk=True, norm=None), dict(lifter=22.0),
    dict(fmin=80.0, fmax=7000.0), dict(top_db=None), dict(top_db=40.0), dict(power=1.0),
], ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_extractor_static_coefficients_match_librosa_layers(variant):
    cfg = FeatureConfig(**variant)
    y = speech(1.5)
    _close(FeatureExtractor(cfg).mfcc(y), _librosa_mel_mfcc(y, cfg))


@pytest.mark.parametrize("top_db", [None, 40.0])
def test_mfcc_top_db_matches_librosa_power_to_db(top_db):
    """librosa.feature.mfcc always uses top_db=80; other values go through its layers."""
    y = speech(2.0)
    cfg = FeatureConfig(top_db=top_db, delta_order=0)
    _close(mfcc(y, sr=SR, top_db=top_db, **PROJECT), _librosa_mel_mfcc(y, cfg))


@pytest.mark.parametrize("n", [1, 255, 400, 1601, 3 * SR])
def test_extractor_stacks_librosa_deltas(n):
    fx = FeatureExtractor(FeatureConfig())
    y = speech(n / SR)
    m = _librosa_mfcc(y, **PROJECT)
    ref = np.vstack([m, librosa.feature.delta(m, order=1, width=9, mode="nearest"),
                     librosa.feature.delta(m, order=2, width=9, mode="nearest")]).T
    got = fx(y)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == ref.shape == (1 + n // 160, 120)
    np.testing.assert_allclose(got, ref, atol=ATOL, rtol=1e-5)  # float32 output: ~6e-8 relative


@pytest.mark.parametrize("order,width", [(0, 9), (1, 9), (2, 5), (1, 3)])
def test_delta_order_and_width(order, width):
    cfg = FeatureConfig(delta_order=order, delta_width=width)
    y = speech(1.0)
    got = FeatureExtractor(cfg)(y)
    assert got.shape == (101, cfg.n_features) and cfg.n_features == 40 * (1 + order)
    np.testing.assert_allclose(got, _librosa_features(y, cfg), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("kw", [
    dict(n_fft=512, n_mels=64),
    dict(n_fft=2048, n_mels=128),
    dict(n_fft=2048, n_mels=128, htk=True),
    dict(n_fft=512, n_mels=40, norm=None),
    dict(n_fft=512, n_mels=64, fmin=60.0, fmax=7600.0),
    dict(n_fft=1024, n_mels=80, htk=True, norm=None, fmin=20.0),
], ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()))
def test_mel_filterbank_matches_librosa(kw):
    ours = mel_filterbank(sr=SR, **kw)
    ref = librosa.filters.mel(sr=SR, **kw)
    assert ours.shape == ref.shape == (kw["n_mels"], 1 + kw["n_fft"] // 2)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("hop", [1, 80, 160, 512])
@pytest.mark.parametrize("n", [1, 159, 160, 161, 16001])
def test_frame_count_is_one_plus_len_over_hop(n, hop):
    cfg = FeatureConfig(hop_length=hop, delta_order=0)
    fx = FeatureExtractor(cfg)
    assert fx.n_frames(n) == 1 + n // hop
    assert fx(noise(n)).shape == (1 + n // hop, 40)


@pytest.mark.parametrize("bad", [
    np.zeros(0), np.zeros(0, np.float32), np.array([0.0, np.nan, 0.0]), np.array([0.1, np.inf]),
    np.full(1000, -np.inf, np.float32), np.zeros((2, 100)), np.zeros((100, 1)),
    np.zeros(100, dtype=np.int16),
], ids=["empty64", "empty32", "nan", "inf", "neg-inf", "2d", "column", "int16"])
def test_bad_audio_raises_value_error(bad):
    with pytest.raises(ValueError):
        FeatureExtractor(FeatureConfig())(bad)
    with pytest.raises(ValueError):
        mfcc(bad)


def test_only_the_orthonormal_dct_is_offered():
    with pytest.raises(FeatureConfigError):
        mfcc(np.zeros(100), norm=None)
    with pytest.raises(FeatureConfigError):
        mfcc(np.zeros(100), dct_type=3)


@pytest.mark.parametrize("change", [
    dict(n_fft=502), dict(n_fft=8), dict(n_fft=401), dict(n_fft=2**20), dict(window="hamming"),
    dict(center=False), dict(pad_mode="edge"), dict(power=3.0), dict(kind="mel"),
    dict(hop_length=160.5), dict(hop_length=True), dict(n_fft="512"), dict(htk=1), dict(top_db="80"), dict(n_mfcc=80), dict(n_mfcc=0), dict(n_mels=0),
    dict(win_length=1024), dict(win_length=0), dict(hop_length=0), dict(sr=0),
    dict(fmax=9000.0), dict(fmin=8000.0), dict(fmin=-1.0), dict(norm="l2"), dict(top_db=-1.0),
    dict(lifter=-1.0), dict(delta_order=3), dict(delta_width=4), dict(delta_width=1),
], ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()))
def test_config_refuses_what_it_cannot_reproduce(change):
    with pytest.raises(FeatureConfigError):
        FeatureConfig(**change)


def test_config_round_trips_through_dict_and_json():
    for cfg in (FeatureConfig(), FeatureConfig(n_mfcc=20, delta_order=1, htk=True, norm=None,
                                               fmin=50.0, fmax=7000.0, top_db=None, lifter=22.0)):
        d = cfg.to_dict()
        assert FeatureConfig.from_dict(d) == cfg
        assert FeatureConfig.from_dict(json.loads(json.dumps(d))) == cfg  # as stored in a model


def test_from_dict_refuses_unknown_keys_and_non_objects():
    d = FeatureConfig().to_dict()
    with pytest.raises(FeatureConfigError, match="pre_emphasis"):
        FeatureConfig.from_dict({**d, "pre_emphasis": 0.97})
    with pytest.raises(FeatureConfigError):
        FeatureConfig.from_dict([("sr", 16000)])
    with pytest.raises(FeatureConfigError):
        FeatureConfig.from_dict({**d, "n_fft": 502})


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 12000),
       amp=st.sampled_from([0.0, 1e-30, 1e-6, 1e-3, 0.1, 1.0, 30.0]),
       seed=st.integers(0, 2**32 - 1))
def test_any_length_and_level_gives_finite_features(n, amp, seed):
    y = noise(n, amp, seed).astype(np.float32)
    f = FeatureExtractor(FeatureConfig())(y)
    assert f.shape == (1 + n // 160, 120) and f.dtype == np.float32
    assert np.isfinite(f).all()
    # and the static part is still librosa's
    y64 = y.astype(np.float64)
    np.testing.assert_allclose(mfcc(y64, **PROJECT), _librosa_mfcc(y64, **PROJECT), atol=ATOL, rtol=RTOL)


def test_reused_scratch_gives_the_same_numbers_whatever_came_before():
    """The extractor keeps per-thread work buffers between calls: growing, shrinking and
    an input longer than what it keeps must not leak one call's numbers into another."""
    from serstream.features.extractor import _KEEP_FRAMES

    cfg = FeatureConfig()
    lengths = [3 * SR, 400, 10 * SR, 1, 2 * SR, (_KEEP_FRAMES + 5) * cfg.hop_length, 5000]
    signals = [_signal("speech" if i % 2 and n <= 3 * SR else "noise", n) for i, n in enumerate(lengths)]
    shared = FeatureExtractor(cfg)
    for y in signals + signals[::-1]:
        np.testing.assert_array_equal(shared(y), FeatureExtractor(cfg)(y))
        np.testing.assert_array_equal(shared.mfcc(y), FeatureExtractor(cfg).mfcc(y))


def test_one_extractor_shared_by_threads_is_safe():
    """NumPy releases the GIL between the kernels: threads must not share scratch."""
    from concurrent.futures import ThreadPoolExecutor

    fx = FeatureExtractor(FeatureConfig())
    signals = [_signal("speech", n) for n in (SR // 2, SR, 2 * SR, 3 * SR)] * 6
    expected = [FeatureExtractor(fx.config)(y) for y in signals]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(fx, signals))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_extractor_pickles():
    import pickle

    fx = FeatureExtractor(FeatureConfig(n_mfcc=13, delta_order=1))
    y = _signal("speech", SR)
    clone = pickle.loads(pickle.dumps(fx))
    assert clone.config == fx.config
    np.testing.assert_array_equal(clone(y), fx(y))


# --------------------------------------------------------------------------- log-mel layer

WHISPER = FeatureConfig(n_fft=400, win_length=400, hop_length=160, n_mels=80, pad_mode="reflect",
                        kind="log_mel", delta_order=0, top_db=80.0, drop_last_frame=True)


def _whisper_formula(y: np.ndarray) -> np.ndarray:
    """Whisper's front end written out from its definition with numpy and librosa (not
    with our code): 16 kHz, n_fft 400, hop 160, periodic Hann, centred with reflect
    padding, power spectrum, last frame dropped, librosa's slaney mel filters,
    log10(max(mel, 1e-10)) floored at its maximum - 8, then (x + 4) / 4."""
    pad = np.pad(y, 200, mode="reflect")
    n_frames = 1 + y.size // 160
    frames = np.stack([pad[t * 160 : t * 160 + 400] for t in range(n_frames)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    power = power[:-1] if n_frames > 1 else power
    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power.T
    x = np.log10(np.maximum(mel, 1e-10))
    x = np.maximum(x, x.max() - 8.0)
    return (x + 4.0) / 4.0


@pytest.mark.parametrize("kind", ["speech", "noise"])
@pytest.mark.parametrize("n", [201, 399, 400, 401, 1600, 1601, 16000, 3 * SR + 77, 10 * SR])
def test_log_mel_matches_the_whisper_front_end_formula(kind, n):
    y = _signal(kind, n)
    ref = _whisper_formula(y)
    ours = FeatureExtractor(WHISPER).log_mel(y)
    assert ours.shape == ref.shape == (80, n // 160)
    # the model's normalisation (mean -40, std 40 dB) is Whisper's (x + 4) / 4 on log10 values
    np.testing.assert_allclose((ours + 40.0) / 40.0, ref, atol=1e-6, rtol=0)
    model_input = FeatureExtractor(WHISPER)(y)
    assert model_input.shape == (n // 160, 80) and model_input.dtype == np.float32
    np.testing.assert_allclose(model_input, ours.T, atol=1e-4, rtol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 50, 150, 199, 200])
def test_log_mel_of_inputs_shorter_than_the_reflect_pad_matches_numpy_pad(n):
    """numpy's reflect padding repeats its mirror for pads longer than the signal; a
    frame of Whisper's front end is 400 samples, a VAD segment can be shorter."""
    y = _signal("noise", n)
    cfg = FeatureConfig(n_fft=400, hop_length=160, n_mels=80, pad_mode="reflect", kind="log_mel",
                        delta_order=0, top_db=None)
    pad = np.pad(y, 200, mode="reflect")
    frames = np.stack([pad[t * 160 : t * 160 + 400] for t in range(1 + n // 160)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    power = (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2).T
    ref = librosa.power_to_db(librosa.filters.mel(sr=SR, n_fft=400, n_mels=80) @ power, top_db=None)
    np.testing.assert_allclose(FeatureExtractor(cfg).log_mel(y), ref, atol=1e-6)
    assert FeatureExtractor(WHISPER)(y).shape == (1, 80)  # at least one frame, never none


@pytest.mark.parametrize("n_fft", [16, 20, 24, 40, 56, 200, 240, 256, 400, 480, 500, 512, 600, 1024, 1400])
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_melspectrogram_matches_librosa_for_mixed_radix_sizes(n_fft, pad_mode):
    """The FFT is mixed-radix (2, 4, 3, 5, 7): every plan shape, odd and even counts of
    radix-2 stages, against librosa's (numpy's pocketfft) spectrum."""
    y = _signal("speech", 3 * n_fft + 123)
    hop = max(1, n_fft // 4)
    kw = dict(sr=SR, n_fft=n_fft, hop_length=hop, n_mels=min(40, n_fft // 4), pad_mode=pad_mode)
    ours = melspectrogram(y, **kw)
    ref = librosa.feature.melspectrogram(y=y, **kw)
    np.testing.assert_allclose(ours, ref, atol=1e-9 * ref.max(), rtol=1e-6)


def test_log_mel_spectrogram_function_is_the_extractor_layer():
    y = _signal("speech", 2 * SR)
    np.testing.assert_array_equal(log_mel_spectrogram(y), FeatureExtractor(WHISPER).log_mel(y))
    S = melspectrogram(y, n_fft=400, hop_length=160, n_mels=80, pad_mode="reflect")[:, :-1]
    np.testing.assert_allclose(log_mel_spectrogram(y), librosa.power_to_db(S, top_db=80.0), atol=1e-6)


def test_mfcc_is_the_dct_of_the_log_mel_layer():
    cfg = FeatureConfig(delta_order=0)
    fx = FeatureExtractor(cfg)
    y = _signal("speech", SR)
    import scipy.fft

    np.testing.assert_allclose(fx.mfcc(y), scipy.fft.dct(fx.log_mel(y), axis=0, norm="ortho")[: cfg.n_mfcc],
                               atol=1e-8)


def test_feature_kind_sets_the_model_input_width():
    assert WHISPER.n_features == 80 and WHISPER.n_static == 80
    assert FeatureConfig().n_features == 120
    assert FeatureConfig(kind="log_mel", n_mels=40, delta_order=1).n_features == 80
    assert WHISPER.n_frames(48000) == 300 and FeatureConfig().n_frames(48000) == 301

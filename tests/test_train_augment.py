"""Augmentation does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from procs import EXAMPLES
from serstream.decode import load_audio
from serstream.features import FeatureConfig, FeatureExtractor
from train.augment import (
    AugmentConfig,
    gain,
    on_the_fly,
    pitch_shift,
    polarity,
    time_stretch,
    white_noise,
)


@pytest.fixture(scope="module")
def y():
    return load_audio(EXAMPLES / "angry_cremad_1001_DFA_ANG_XX.wav").samples


def test_polarity_exactly_negates(y):
    assert np.array_equal(polarity(y), -y)
    fx = FeatureExtractor(FeatureConfig())
    assert np.allclose(fx(polarity(y)), fx(y), atol=1e-5)  # and MFCCs cannot tell


@pytest.mark.parametrize("db", [-12.0, -3.0, 0.0, 6.0])
def test_gain_scales_by_the_requested_db(y, db):
    g = gain(y, db)
    ratio = np.sqrt(np.mean(g.astype(np.float64) ** 2) / np.mean(y.astype(np.float64) ** 2))
    assert 20 * np.log10(ratio) == pytest.approx(db, abs=1e-3)


def test_random_gain_stays_in_range(y):
    cfg = AugmentConfig(noise_p=0, polarity_p=0, gain_p=1.0, gain_db=(-6.0, 3.0))
    rng = np.random.default_rng(0)
    peak = np.abs(y).max()
    for _ in range(50):
        out = on_the_fly(y, cfg, rng)
        db = 20 * np.log10(np.abs(out).max() / peak)
        assert -6.0 - 1e-3 <= db <= 3.0 + 1e-3


@pytest.mark.parametrize("snr", [5.0, 20.0])
def test_white_noise_at_requested_snr(y, snr):
    noisy = white_noise(y, snr, np.random.default_rng(1))
    noise = noisy.astype(np.float64) - y
    measured = 10 * np.log10(np.mean(y.astype(np.float64) ** 2) / np.mean(noise**2))
    assert measured == pytest.approx(snr, abs=0.3)


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_time_stretch_changes_length_as_asked(y, rate):
    out = time_stretch(y, rate)
    assert out.size == pytest.approx(y.size / rate, rel=0.01)


@pytest.mark.parametrize("steps", [-2.0, 2.0])
def test_pitch_shift_keeps_length_and_moves_pitch(y, steps):
    out = pitch_shift(y, 16000, steps)
    assert out.size == y.size

    def centroid(a):
        spec = np.abs(np.fft.rfft(a[: 16000 * 1]))
        return (spec * np.arange(spec.size)).sum() / spec.sum()

    assert (centroid(out) > centroid(y)) == (steps > 0)

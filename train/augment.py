"""Waveform augmentation for training clips only (applied after the split).

Cheap transforms (white noise at a random SNR, random gain, polarity inversion) run on
the fly every epoch; time stretch and pitch shift (librosa phase vocoder, tens of ms a
clip) are computed once as cached variants of each training clip.

Note on what reaches the model: polarity inversion leaves a power spectrum, hence the
MFCCs, exactly unchanged, and gain only moves c0 (up to top_db clipping). They are
kept because they cost nothing; noise, stretch and pitch are the ones that change the
features.

Known bias: librosa's phase vocoder leaves stretched / shifted clips about 3-4 dB lower
in RMS than their originals (phase incoherence), i.e. c0 a little lower in the cached
variants. The random gain (-12..+6 dB) spans far more than that, so it is left as is;
level-matching the variants would change the variant cache and needs a retrain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    noise_p: float = 0.5
    noise_snr_db: tuple[float, float] = (10.0, 35.0)
    gain_p: float = 0.5
    gain_db: tuple[float, float] = (-12.0, 6.0)
    polarity_p: float = 0.5
    stretch_p: float = 0.5  # chance a training clip gets a cached time-stretched variant
    stretch_rate: tuple[float, float] = (0.85, 1.15)
    pitch_p: float = 0.5  # chance of a cached pitch-shifted variant
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)


def white_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    power = float(np.mean(y.astype(np.float64) ** 2))
    if power <= 0:
        return y.copy()
    noise = rng.standard_normal(y.shape) * np.sqrt(power / 10 ** (snr_db / 10))
    return (y + noise).astype(np.float32)


def gain(y: np.ndarray, db: float) -> np.ndarray:
    return (y * np.float32(10 ** (db / 20))).astype(np.float32)


def polarity(y: np.ndarray) -> np.ndarray:
    return -y


def time_stretch(y: np.ndarray, rate: float) -> np.ndarray:
    """Faster (rate > 1) or slower speech, same pitch; length becomes ~len/rate."""
    import librosa

    return librosa.effects.time_stretch(y.astype(np.float32), rate=rate).astype(np.float32)


def pitch_shift(y: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Higher or lower voice, same length and timing."""
    import librosa

    return librosa.effects.pitch_shift(y.astype(np.float32), sr=sr, n_steps=semitones).astype(np.float32)


def on_the_fly(y: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """The per-epoch transforms, each with its own probability; clipped like a microphone."""
    if rng.random() < config.gain_p:
        y = gain(y, rng.uniform(*config.gain_db))
    if rng.random() < config.noise_p:
        y = white_noise(y, rng.uniform(*config.noise_snr_db), rng)
    if rng.random() < config.polarity_p:
        y = polarity(y)
    return np.clip(y, -1.0, 1.0).astype(np.float32, copy=False)


def cached_variants(y: np.ndarray, sr: int, config: AugmentConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Slow transforms for one training clip, decided once."""
    out = []
    if rng.random() < config.stretch_p:
        out.append(time_stretch(y, rng.uniform(*config.stretch_rate)))
    if rng.random() < config.pitch_p:
        out.append(pitch_shift(y, sr, rng.uniform(*config.pitch_semitones)))
    return out

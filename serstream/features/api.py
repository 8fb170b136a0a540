"""librosa's function signatures over the project's extractor, for people and tests
that think in ``librosa.feature.melspectrogram`` / ``mfcc`` calls."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from serstream.features.config import FeatureConfig, FeatureConfigError
from serstream.features.extractor import FeatureExtractor

__all__ = ["melspectrogram", "log_mel_spectrogram", "mfcc"]


@lru_cache(maxsize=8)
def _extractor_for(config: FeatureConfig) -> FeatureExtractor:
    return FeatureExtractor(config)


def _config(sr: int, n_fft: int, hop_length: int, win_length: int | None, pad_mode: str, power: float,
            n_mels: int, fmin: float, fmax: float | None, htk: bool, norm: str | None,
            top_db: float | None = None, **kw) -> FeatureConfig:
    return FeatureConfig(sr=sr, n_fft=n_fft, win_length=win_length or n_fft, hop_length=hop_length,
                         pad_mode=pad_mode, power=power, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk,
                         norm=norm, top_db=top_db, delta_order=0, n_mfcc=kw.pop("n_mfcc", 1), **kw)


def melspectrogram(
    y: np.ndarray,
    *,
    sr: int = 16000,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: int | None = None,
    pad_mode: str = "constant",
    power: float = 2.0,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """``librosa.feature.melspectrogram`` (``window='hann'``, ``center=True``), with its
    names and defaults but for ``sr`` (the project's 16 kHz, as in :func:`mfcc`):
    ``(n_mels, 1 + len(y) // hop_length)`` float64.

    ``n_fft`` may be any even size whose half has no prime factor above 7 (400 for
    Whisper's front end, 512 for the MFCC model's).
    """
    cfg = _config(sr, n_fft, hop_length, win_length, pad_mode, power, n_mels, fmin, fmax, htk, norm)
    return _extractor_for(cfg).melspectrogram(y)


def log_mel_spectrogram(
    y: np.ndarray,
    *,
    sr: int = 16000,
    n_fft: int = 400,
    hop_length: int = 160,
    win_length: int | None = None,
    pad_mode: str = "reflect",
    n_mels: int = 80,
    top_db: float | None = 80.0,
    drop_last_frame: bool = True,
) -> np.ndarray:
    """Decibels of the mel power, ``librosa.power_to_db(S, ref=1, amin=1e-10, top_db)``,
    ``(n_mels, n_frames)``. The defaults are Whisper's front end: in its units,
    ``(log_mel_spectrogram(y) / 10 + 4) / 4`` is ``whisper.log_mel_spectrogram(y)``
    (Whisper's ``max(x, x.max() - 8)`` on ``log10`` values is ``top_db=80``).
    """
    cfg = _config(sr, n_fft, hop_length, win_length, pad_mode, 2.0, n_mels, 0.0, None, False, "slaney",
                  top_db=top_db, kind="log_mel", drop_last_frame=drop_last_frame)
    return _extractor_for(cfg).log_mel(y)


def mfcc(
    y: np.ndarray,
    *,
    sr: int = 16000,
    n_mfcc: int = 20,
    dct_type: int = 2,
    norm: str | None = "ortho",
    lifter: float = 0.0,
    n_fft: int = 2048,
    hop_length: int = 512,
    win_length: int | None = None,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    top_db: float | None = 80.0,
    power: float = 2.0,
) -> np.ndarray:
    """MFCC with ``librosa.feature.mfcc``'s parameter names, meanings and defaults
    (``window='hann'``, ``center=True``, ``pad_mode='constant'``, slaney-normalised mel
    filters). As in librosa, ``norm`` is the DCT's normalisation: only ``dct_type=2``
    with ``norm='ortho'`` is implemented. (``FeatureConfig.norm`` is the *mel filter*
    norm, as in ``librosa.feature.melspectrogram``.)

    Returns ``(n_mfcc, 1 + len(y) // hop_length)``; agrees with librosa to float64
    rounding of the FFT (see ``tests/test_features.py`` for the tolerance).

    Raises
    ------
    ValueError
        Empty, non-finite or multi-channel input, or parameters this code cannot reproduce.

    See Also
    --------
    FeatureExtractor : the same computation with tables kept between calls.
    """
    if dct_type != 2 or norm != "ortho":
        raise FeatureConfigError("only the orthonormal DCT-II (dct_type=2, norm='ortho') is implemented")
    cfg = _config(sr, n_fft, hop_length, win_length, "constant", power, n_mels, fmin, fmax, htk, "slaney",
                  top_db=top_db, n_mfcc=n_mfcc, lifter=lifter)
    return _extractor_for(cfg).mfcc(y)

"""The fixed tables of the front end, built once per configuration: window, mel filters,
DCT rows and delta weights, each as librosa / scipy define them."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["hann_window", "mel_filterbank", "dct_matrix", "savgol_weights", "sparse_rows"]


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann of ``win_length`` centred in ``n_fft`` zeros.

    As ``scipy.signal.get_window('hann', n, fftbins=True)`` makes it for librosa (and
    ``torch.hann_window`` for Whisper), including scipy's special case of a 1-sample
    window, which is ``[1.0]``, not ``[0.0]``.
    """
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
           if win_length > 1 else np.ones(1))
    window = np.zeros(n_fft)
    lpad = (n_fft - win_length) // 2
    window[lpad : lpad + win_length] = win
    return window


def _hz_to_mel(freqs: np.ndarray, htk: bool) -> np.ndarray:
    freqs = np.asanyarray(freqs, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + freqs / 700.0)
    f_sp = 200.0 / 3
    mels = freqs / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = freqs >= min_log_hz
    return np.where(log_t, min_log_mel + np.log(np.maximum(freqs, 1e-12) / min_log_hz) / logstep, mels)


def _mel_to_hz(mels: np.ndarray, htk: bool) -> np.ndarray:
    mels = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    return np.where(log_t, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


def mel_filterbank(
    *,
    sr: int,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular mel filters, shape ``(n_mels, 1 + n_fft // 2)``, as ``librosa.filters.mel``.

    Rounded through float32 like librosa's default (and Whisper's stored filters), so
    that parity is limited only by the FFT, not by the filter weights.
    """
    fmax = sr / 2 if fmax is None else fmax
    fftfreqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_pts = np.linspace(_hz_to_mel(np.array(fmin), htk), _hz_to_mel(np.array(fmax), htk), n_mels + 2)
    mel_f = _mel_to_hz(mel_pts, htk)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fftfreqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32).astype(np.float64)


def dct_matrix(n_mfcc: int, n_mels: int, lifter: float) -> np.ndarray:
    """Orthonormal DCT-II rows (scipy ``norm='ortho'``), liftered as librosa does."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[0] *= np.sqrt(0.5)
    if lifter > 0:
        basis *= (1 + (lifter / 2) * np.sin(np.pi * np.arange(1, n_mfcc + 1) / lifter))[:, None]
    return np.ascontiguousarray(basis)


def savgol_weights(width: int, order: int) -> np.ndarray:
    """Savitzky-Golay derivative weights, as ``scipy.signal.savgol_filter`` builds them
    for ``librosa.feature.delta`` (polyorder = deriv = order), applied as correlation."""
    half = width // 2
    positions = np.arange(-half, half + 1, dtype=np.float64)
    design = positions[:, None] ** np.arange(order + 1)[None, :]
    return np.linalg.pinv(design)[order] * math.factorial(order)


def sparse_rows(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each mel filter is a narrow triangle: keep its non-zero span only, as
    ``(start bin per filter, (n_mels, width) weights)``."""
    n_mels, n_bins = dense.shape
    starts = np.zeros(n_mels, dtype=np.int64)
    spans = []
    for b in range(n_mels):
        nz = np.flatnonzero(dense[b])
        spans.append((0, 0) if nz.size == 0 else (nz[0], nz[-1] + 1))
    width = max(1, max(hi - lo for lo, hi in spans))
    weights = np.zeros((n_mels, width))
    for b, (lo, _hi) in enumerate(spans):
        lo = min(lo, n_bins - width)
        starts[b] = lo
        weights[b, : min(width, n_bins - lo)] = dense[b, lo : lo + width]
    return starts, weights

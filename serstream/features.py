"""Framed MFCC features, jitted with Numba, numerically matching ``librosa.feature.mfcc``.

This module is the *only* feature implementation in the project: the daemon uses it for
every segment and ``train/`` uses it to build the training set, so a model never sees
features computed by other code than the one that serves it.

Why not librosa at run time: librosa rebuilds the mel filterbank and re-validates its
input on every call, and pulls in a large dependency tree. Here the filterbank (stored
sparse), the DCT matrix, the window and the FFT tables are built once per
:class:`FeatureConfig`; each call is one jitted pass over the frames.

Conventions follow librosa: parameter names ``sr``, ``n_fft``, ``hop_length``,
``win_length``, ``n_mels``, ``n_mfcc``, ``fmin``, ``fmax``, ``htk``, ``norm``,
``top_db``, ``lifter``; ``mfcc`` returns ``(n_mfcc, n_frames)``. The model-facing
:meth:`FeatureExtractor.__call__` returns ``(n_frames, n_features)`` float32 with the
deltas stacked after the static coefficients.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, fields
from functools import cache, lru_cache
from typing import Any

import numba
import numpy as np

__all__ = [
    "FeatureConfig",
    "FeatureConfigError",
    "FeatureExtractor",
    "mel_filterbank",
    "mfcc",
]


class FeatureConfigError(ValueError):
    """A feature configuration this code cannot reproduce exactly."""


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that decides the numbers a model sees.

    Stored verbatim in every exported model's metadata; the daemon rebuilds its
    extractor from it and refuses a model whose configuration it cannot reproduce.
    Defaults suit 16 kHz speech: 25 ms Hann windows every 10 ms, a 512-point FFT.
    """

    sr: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    power: float = 2.0
    n_mels: int = 64
    fmin: float = 0.0
    fmax: float | None = None
    htk: bool = False
    norm: str | None = "slaney"  # mel filter normalisation (librosa.filters.mel's `norm`)
    n_mfcc: int = 40
    top_db: float | None = 80.0
    lifter: float = 0.0
    delta_order: int = 2
    delta_width: int = 9

    def __post_init__(self) -> None:
        problems = []
        if self.sr <= 0:
            problems.append(f"sr must be positive, got {self.sr}")
        if self.n_fft < 16 or self.n_fft & (self.n_fft - 1):
            problems.append(f"n_fft must be a power of two >= 16, got {self.n_fft}")
        if not 0 < self.win_length <= self.n_fft:
            problems.append(f"win_length must be in (0, n_fft], got {self.win_length}")
        if self.hop_length <= 0:
            problems.append(f"hop_length must be positive, got {self.hop_length}")
        if self.window != "hann":
            problems.append(f"window {self.window!r} is not supported (only 'hann')")
        if not self.center:
            problems.append("center=False is not supported")
        if self.pad_mode != "constant":
            problems.append(f"pad_mode {self.pad_mode!r} is not supported (only 'constant')")
        if self.power not in (1.0, 2.0):
            problems.append(f"power must be 1.0 or 2.0, got {self.power}")
        fmax = self.sr / 2 if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= self.sr / 2:
            problems.append(f"need 0 <= fmin < fmax <= sr/2, got fmin={self.fmin}, fmax={fmax}")
        if self.n_mels < 1:
            problems.append(f"n_mels must be positive, got {self.n_mels}")
        if self.norm not in (None, "slaney"):
            problems.append(f"norm {self.norm!r} is not supported (None or 'slaney')")
        if not 1 <= self.n_mfcc <= self.n_mels:
            problems.append(f"n_mfcc must be in [1, n_mels], got {self.n_mfcc}")
        if self.top_db is not None and self.top_db < 0:
            problems.append(f"top_db must be non-negative, got {self.top_db}")
        if self.lifter < 0:
            problems.append(f"lifter must be non-negative, got {self.lifter}")
        if self.delta_order not in (0, 1, 2):
            problems.append(f"delta_order must be 0, 1 or 2, got {self.delta_order}")
        if self.delta_width < 3 or self.delta_width % 2 == 0:
            problems.append(f"delta_width must be odd and >= 3, got {self.delta_width}")
        if problems:
            raise FeatureConfigError("; ".join(problems))

    @property
    def n_features(self) -> int:
        """Width of one frame as the model sees it (static + delta coefficients)."""
        return self.n_mfcc * (1 + self.delta_order)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Strict inverse of :meth:`to_dict`: an unknown key means a feature this code lacks."""
        if not isinstance(data, dict):
            raise FeatureConfigError(f"feature configuration must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FeatureConfigError(f"unknown feature settings {unknown}")
        try:
            return cls(**data)
        except TypeError as exc:  # wrong value types
            raise FeatureConfigError(str(exc)) from None


# --------------------------------------------------------------------------- filterbank


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
    mels = np.where(log_t, min_log_mel + np.log(np.maximum(freqs, 1e-12) / min_log_hz) / logstep, mels)
    return mels


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

    Rounded through float32 like librosa's default so that parity is limited only by
    the FFT, not by the filter weights.
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


def _dct_matrix(n_mfcc: int, n_mels: int, lifter: float) -> np.ndarray:
    """Orthonormal DCT-II rows (scipy ``norm='ortho'``), liftered as librosa does."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[0] *= np.sqrt(0.5)
    if lifter > 0:
        basis *= (1 + (lifter / 2) * np.sin(np.pi * np.arange(1, n_mfcc + 1) / lifter))[:, None]
    return np.ascontiguousarray(basis)


def _savgol_weights(width: int, order: int) -> np.ndarray:
    """Savitzky-Golay derivative weights, as ``scipy.signal.savgol_filter`` builds them
    for ``librosa.feature.delta`` (polyorder = deriv = order), applied as correlation."""
    half = width // 2
    positions = np.arange(-half, half + 1, dtype=np.float64)
    design = positions[:, None] ** np.arange(order + 1)[None, :]
    return np.linalg.pinv(design)[order] * math.factorial(order)


# --------------------------------------------------------------------------- jitted core


@cache
def _fft_tables(n_fft: int) -> tuple[np.ndarray, ...]:
    """Bit reversal and twiddles for a complex FFT of n_fft/2 points, plus the
    twiddles that unpack it into the real FFT of n_fft points."""
    m = n_fft // 2
    bits = m.bit_length() - 1
    rev = np.zeros(m, dtype=np.int64)
    for i in range(m):
        r, x = 0, i
        for _ in range(bits):
            r = (r << 1) | (x & 1)
            x >>= 1
        rev[i] = r
    half_tw = np.exp(-2j * np.pi * np.arange(max(m // 2, 1)) / m)
    real_tw = np.exp(-2j * np.pi * np.arange(m + 1) / n_fft)
    return (rev, np.ascontiguousarray(half_tw.real), np.ascontiguousarray(half_tw.imag),
            np.ascontiguousarray(real_tw.real), np.ascontiguousarray(real_tw.imag))


# Reassociation lets LLVM vectorise the sums; no 'nnan'/'ninf' so that the -inf/1e-10
# guards keep their meaning.
_FAST = {"reassoc", "contract", "nsz"}
_BATCH = 64  # frames transformed together: the innermost loops run across frames (SIMD)


@numba.njit(cache=True, fastmath=_FAST)
def _project_batch(spec, nb, mel, t0, mel_start, mel_weights):  # pragma: no cover - jitted
    """Sparse mel filterbank on one batch: each filter touches only its own few bins.

    Kept apart, accumulating in a short vector per filter: written inline in the FFT
    kernel and accumulating straight into ``mel``, the same sums took twice as long.
    """
    n_mels, width = mel_weights.shape
    acc = np.empty(_BATCH, dtype=np.float64)
    for b in range(n_mels):
        b0 = mel_start[b]
        for f in range(nb):
            acc[f] = 0.0
        for j in range(width):
            w = mel_weights[b, j]
            if w != 0.0:
                for f in range(nb):
                    acc[f] += w * spec[b0 + j, f]
        for f in range(nb):
            mel[b, t0 + f] = acc[f]


@numba.njit(cache=True, fastmath=_FAST)
def _mel_spectrogram(y, window, lo, hi, n_fft, hop, rev, tw_re, tw_im, rtw_re, rtw_im, power,  # pragma: no cover
                     mel_start, mel_weights, re, im, spec, mel):
    """Centered, zero-padded framing, windowing, |rFFT|**power and mel projection.

    Fills ``mel``, ``(n_mels, n_frames)``; ``re``, ``im`` and ``spec`` are scratch
    (see :class:`_Scratch`). The real FFT is a complex FFT of half the size (even
    samples as real part, odd as imaginary), unpacked afterwards; frames are transformed
    in batches with the frame index innermost, so every butterfly is a vector operation
    over frames. Each batch's spectrum is projected onto the mel filters while it is
    still in cache, so the full ``(1 + n_fft // 2, n_frames)`` spectrogram never exists.
    Sample pairs ``2j, 2j + 1`` with ``j`` outside ``[lo, hi)`` fall where the window is
    zero (``win_length < n_fft``) and are not read at all.
    """
    n = y.shape[0]
    pad = n_fft // 2
    n_frames = 1 + n // hop
    m = n_fft // 2
    n_bins = m + 1
    for t0 in range(0, n_frames, _BATCH):
        nb = min(_BATCH, n_frames - t0)
        inside = (t0 * hop - pad) >= 0 and ((t0 + nb - 1) * hop - pad + n_fft) <= n
        for j in range(m):
            if j < lo or j >= hi:
                r = rev[j]
                for f in range(nb):
                    re[r, f] = 0.0
                    im[r, f] = 0.0
        for j in range(lo, hi):
            r = rev[j]
            w0 = window[2 * j]
            w1 = window[2 * j + 1]
            if inside:  # every sample of these frames is inside the signal
                for f in range(nb):
                    i0 = (t0 + f) * hop - pad + 2 * j
                    re[r, f] = y[i0] * w0
                    im[r, f] = y[i0 + 1] * w1
            else:
                for f in range(nb):
                    i0 = (t0 + f) * hop - pad + 2 * j
                    re[r, f] = y[i0] * w0 if 0 <= i0 < n else 0.0
                    im[r, f] = y[i0 + 1] * w1 if 0 <= i0 + 1 < n else 0.0
        # stages of size 2 and 4 together: their twiddles are 1 and -i, no multiplies
        for base in range(0, m, 4):
            for f in range(nb):
                ar, ai = re[base, f], im[base, f]
                br, bi = re[base + 1, f], im[base + 1, f]
                cr, ci = re[base + 2, f], im[base + 2, f]
                dr, di = re[base + 3, f], im[base + 3, f]
                s0r, s0i = ar + br, ai + bi
                d0r, d0i = ar - br, ai - bi
                s1r, s1i = cr + dr, ci + di
                d1r, d1i = cr - dr, ci - di
                re[base, f], im[base, f] = s0r + s1r, s0i + s1i
                re[base + 2, f], im[base + 2, f] = s0r - s1r, s0i - s1i
                # (d1) * (-i) = (d1i, -d1r)
                re[base + 1, f], im[base + 1, f] = d0r + d1i, d0i - d1r
                re[base + 3, f], im[base + 3, f] = d0r - d1i, d0i + d1r
        # then radix-4 passes: two radix-2 stages per sweep over the data
        size = 4  # length of the sub-transforms done so far
        while size * 4 <= m:
            step1 = m // (2 * size)
            step2 = m // (4 * size)
            for base in range(0, m, 4 * size):
                for k in range(size):
                    w1r = tw_re[k * step1]
                    w1i = tw_im[k * step1]
                    w2r = tw_re[k * step2]
                    w2i = tw_im[k * step2]
                    a = base + k
                    b = a + size
                    c = b + size
                    d = c + size
                    for f in range(nb):
                        # stage of length 2*size: (a, b) and (c, d) with twiddle w1
                        tr = re[b, f] * w1r - im[b, f] * w1i
                        ti = re[b, f] * w1i + im[b, f] * w1r
                        a1r = re[a, f] + tr
                        a1i = im[a, f] + ti
                        b1r = re[a, f] - tr
                        b1i = im[a, f] - ti
                        tr = re[d, f] * w1r - im[d, f] * w1i
                        ti = re[d, f] * w1i + im[d, f] * w1r
                        c1r = re[c, f] + tr
                        c1i = im[c, f] + ti
                        d1r = re[c, f] - tr
                        d1i = im[c, f] - ti
                        # stage of length 4*size: (a, c) with w2, (b, d) with w2 * (-i)
                        tr = c1r * w2r - c1i * w2i
                        ti = c1r * w2i + c1i * w2r
                        re[a, f] = a1r + tr
                        im[a, f] = a1i + ti
                        re[c, f] = a1r - tr
                        im[c, f] = a1i - ti
                        tr = d1r * w2i + d1i * w2r  # (d1 * w2) * -i = (im, -re)
                        ti = -(d1r * w2r - d1i * w2i)
                        re[b, f] = b1r + tr
                        im[b, f] = b1i + ti
                        re[d, f] = b1r - tr
                        im[d, f] = b1i - ti
            size *= 4
        if size * 2 <= m:  # an odd number of stages: one radix-2 sweep to finish
            step = m // (2 * size)
            for base in range(0, m, 2 * size):
                for k in range(size):
                    wr = tw_re[k * step]
                    wi = tw_im[k * step]
                    i = base + k
                    jx = i + size
                    for f in range(nb):
                        xr = re[jx, f] * wr - im[jx, f] * wi
                        xi = re[jx, f] * wi + im[jx, f] * wr
                        re[jx, f] = re[i, f] - xr
                        im[jx, f] = im[i, f] - xi
                        re[i, f] += xr
                        im[i, f] += xi
        for k in range(n_bins):
            k1 = k % m
            k2 = (m - k) % m
            twr = rtw_re[k]
            twi = rtw_im[k]
            for f in range(nb):
                zr = re[k1, f]
                zi = im[k1, f]
                cr = re[k2, f]
                ci = -im[k2, f]
                er = 0.5 * (zr + cr)
                ei = 0.5 * (zi + ci)
                # odd part (Z - conj(Z')) / 2i
                orr = 0.5 * (zi - ci)
                oi = -0.5 * (zr - cr)
                xr = er + orr * twr - oi * twi
                xi = ei + orr * twi + oi * twr
                mag2 = xr * xr + xi * xi
                spec[k, f] = mag2
        if power != 2.0:
            for k in range(n_bins):
                for f in range(nb):
                    spec[k, f] = math.sqrt(spec[k, f])
        _project_batch(spec, nb, mel, t0, mel_start, mel_weights)


def _power_to_db(mel: np.ndarray, top_db: float | None) -> None:
    """power_to_db (ref=1, amin=1e-10, top_db below the segment's peak) in place, in
    bels: the factor 10 of the decibels is folded into the DCT matrix.

    Both floors are applied to the power before the logarithm (the log is monotonic, so
    flooring there equals librosa's flooring of the decibels). NumPy rather than Numba
    on purpose: NumPy's log10 and max are SIMD-vectorised while a jitted loop calls
    scalar libm (3x slower).
    """
    floor = 1e-10
    if top_db is not None:
        floor = max(floor, float(mel.max()) * 10.0 ** (-top_db / 10.0))
    np.maximum(mel, floor, out=mel)
    np.log10(mel, out=mel)


@numba.njit(cache=True, fastmath=_FAST)
def _stack_deltas(static, weights, feat):  # pragma: no cover - jitted
    """Fill ``feat``, ``(n_mfcc * (1 + n_orders), n_frames)``, with the static MFCC and,
    below them, each row correlated with ``weights[o]`` (Savitzky-Golay derivative of
    order ``o + 1``, edges extended with the nearest value, as ``librosa.feature.delta``
    with ``mode='nearest'``).

    Every inner loop runs over contiguous slices with non-negative indices: with a
    possibly negative index (``t + j - half``) Numba's wraparound test kept LLVM from
    vectorising, and the deltas cost more than the whole FFT.
    """
    rows, n = static.shape
    n_orders, width = weights.shape
    half = width // 2
    for r in range(rows):
        row = static[r]
        feat[r, :] = row
        for o in range(n_orders):
            acc = feat[rows * (1 + o) + r]
            acc[:] = 0.0
            for j in range(width):
                w = weights[o, j]
                # interior frames read row[t + j - half] directly; the few at each edge clamp
                t_lo = min(max(half - j, 0), n)
                t_hi = max(min(n + half - j, n), t_lo)
                src = row[t_lo + j - half : t_hi + j - half]
                dst = acc[t_lo:t_hi]
                for i in range(t_hi - t_lo):
                    dst[i] += w * src[i]
                for t in range(t_lo):
                    acc[t] += w * row[0]
                for t in range(t_hi, n):
                    acc[t] += w * row[n - 1]


# --------------------------------------------------------------------------- public API


_KEEP_FRAMES = 6000  # 60 s at the default hop: longer inputs get a mel buffer of their own


class _Scratch(threading.local):
    """Per-thread work buffers of one extractor, reused from call to call.

    Why: every array above glibc's mmap threshold (128 KiB) is a fresh mmap, and each of
    its pages faults on first touch. Allocated per call, the FFT and mel buffers of a
    3 s segment cost ~200 page faults, which on a virtual machine doubled the time of the
    whole MFCC. Thread-local because NumPy releases the GIL between the kernels, so two
    threads sharing one extractor must not share its scratch.
    """

    def __init__(self, m: int) -> None:
        self.re = np.zeros((m, _BATCH))
        self.im = np.zeros((m, _BATCH))
        self.spec = np.zeros((m + 1, _BATCH))
        self.flat: dict[str, np.ndarray] = {}

    def rows(self, name: str, n_rows: int, n_frames: int) -> np.ndarray:
        """A C-contiguous ``(n_rows, n_frames)`` float64 view of the buffer ``name``."""
        size = n_rows * n_frames
        buf = self.flat.get(name)
        if buf is None or size > buf.size:
            if n_frames > _KEEP_FRAMES:  # an unusually long input: do not keep its buffer
                return np.empty((n_rows, n_frames))
            buf = self.flat[name] = np.empty(max(size, 0 if buf is None else 2 * buf.size))
        return buf[:size].reshape(n_rows, n_frames)


class FeatureExtractor:
    """MFCC (+ deltas) for one :class:`FeatureConfig`, with all tables built once.

    Parameters
    ----------
    config : FeatureConfig
        Usually read from a model's metadata (see :mod:`serstream.model`).

    Examples
    --------
    >>> fx = FeatureExtractor(FeatureConfig())
    >>> fx(np.zeros(16000, dtype=np.float32)).shape
    (101, 120)
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        c = config
        # periodic Hann, as scipy.signal.get_window('hann', n, fftbins=True) makes it for
        # librosa: including its special case of a 1-sample window, which is [1.0], not [0.0]
        win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(c.win_length) / c.win_length)
               if c.win_length > 1 else np.ones(1))
        window = np.zeros(c.n_fft)
        lpad = (c.n_fft - c.win_length) // 2
        window[lpad : lpad + c.win_length] = win
        self._window = window
        nonzero = np.flatnonzero(window)
        self._pairs = (int(nonzero[0]) // 2, int(nonzero[-1]) // 2 + 1)  # window's support, in sample pairs
        self._fft = _fft_tables(c.n_fft)
        dense = mel_filterbank(
            sr=c.sr, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax, htk=c.htk, norm=c.norm
        )
        self._mel_start, self._mel_weights = _to_sparse_rows(dense)
        self._dct10 = 10.0 * _dct_matrix(c.n_mfcc, c.n_mels, c.lifter)
        self._delta_weights = np.array(
            [_savgol_weights(c.delta_width, order) for order in range(1, c.delta_order + 1)]
        ).reshape(c.delta_order, c.delta_width)
        self._scratch = _Scratch(c.n_fft // 2)

    def mfcc(self, y: np.ndarray) -> np.ndarray:
        """Static MFCC, ``(n_mfcc, n_frames)`` float64; ``n_frames = 1 + len(y) // hop_length``."""
        y = _as_mono_float64(y)
        c = self.config
        s = self._scratch
        mel = s.rows("mel", c.n_mels, self.n_frames(y.size))
        _mel_spectrogram(y, self._window, *self._pairs, c.n_fft, c.hop_length, *self._fft,
                         c.power, self._mel_start, self._mel_weights, s.re, s.im, s.spec, mel)
        _power_to_db(mel, c.top_db)
        return self._dct10 @ mel

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Model input for one segment: ``(n_frames, n_features)`` float32, time first."""
        static = self.mfcc(y)
        feat = self._scratch.rows("feat", self.config.n_features, static.shape[1])
        _stack_deltas(static, self._delta_weights, feat)
        return np.ascontiguousarray(feat.T, dtype=np.float32)

    def __reduce__(self):
        # the tables are rebuilt from the configuration; thread-local scratch cannot be pickled
        return (type(self), (self.config,))

    def n_frames(self, n_samples: int) -> int:
        return 1 + n_samples // self.config.hop_length

    def warmup(self) -> None:
        """Run every jitted kernel once so the first real segment pays no compile cost."""
        self(np.zeros(self.config.n_fft, dtype=np.float32))


def _to_sparse_rows(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each mel filter is a narrow triangle: keep its non-zero span only."""
    n_mels, n_bins = dense.shape
    starts = np.zeros(n_mels, dtype=np.int64)
    spans = []
    for b in range(n_mels):
        nz = np.flatnonzero(dense[b])
        if nz.size == 0:
            spans.append((0, 0))
        else:
            spans.append((nz[0], nz[-1] + 1))
    width = max(1, max(hi - lo for lo, hi in spans))
    weights = np.zeros((n_mels, width))
    for b, (lo, _hi) in enumerate(spans):
        lo = min(lo, n_bins - width)
        starts[b] = lo
        weights[b, : min(width, n_bins - lo)] = dense[b, lo : lo + width]
    return starts, weights


def _as_mono_float64(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"expected mono audio as a 1-D array, got shape {y.shape}")
    if y.size == 0:
        raise ValueError("cannot compute features of empty audio")
    if not np.issubdtype(y.dtype, np.floating):
        raise ValueError(f"expected floating-point audio, got {y.dtype}")
    y = np.ascontiguousarray(y, dtype=np.float64)
    if not np.isfinite(y).all():
        raise ValueError("audio contains NaN or infinite samples")
    return y


@lru_cache(maxsize=8)
def _extractor_for(config: FeatureConfig) -> FeatureExtractor:
    return FeatureExtractor(config)


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
    config = FeatureConfig(
        sr=sr, n_fft=n_fft, win_length=win_length or n_fft, hop_length=hop_length,
        n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm="slaney", n_mfcc=n_mfcc,
        top_db=top_db, lifter=lifter, power=power, delta_order=0,
    )
    return _extractor_for(config).mfcc(y)

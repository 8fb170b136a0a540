"""One configuration's front end, its tables built once, its layers librosa's:
mel spectrogram -> log-mel (decibels) -> MFCC, each available on its own."""

from __future__ import annotations

import threading

import numpy as np

from serstream.features.config import FeatureConfig
from serstream.features.filters import (
    dct_matrix,
    hann_window,
    mel_filterbank,
    savgol_weights,
    sparse_rows,
)
from serstream.features.jit import njit
from serstream.features.stft import BATCH, fft_plan, mel_power

__all__ = ["FeatureExtractor"]

_KEEP_FRAMES = 6000  # 60 s at the default hop: longer inputs get a buffer of their own


class _Scratch(threading.local):
    """Per-thread work buffers of one extractor, reused from call to call.

    Why: every array above glibc's mmap threshold (128 KiB) is a fresh mmap, and each of
    its pages faults on first touch. Allocated per call, the FFT and mel buffers of a
    3 s segment cost ~200 page faults, which on a virtual machine doubled the time of the
    whole MFCC. Thread-local because NumPy releases the GIL between the kernels, so two
    threads sharing one extractor must not share its scratch.
    """

    def __init__(self, m: int) -> None:
        self.re = np.zeros((m, BATCH))
        self.im = np.zeros((m, BATCH))
        self.spec = np.zeros((m + 1, BATCH))
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


def _to_bels(mel: np.ndarray, top_db: float | None) -> None:
    """``power_to_db`` (ref=1, amin=1e-10, ``top_db`` below the segment's peak) in place,
    in bels: the factor 10 is folded into whatever comes next (the DCT, or the scaling
    of the log-mel layer).

    Both floors are applied to the power before the logarithm (the log is monotonic, so
    flooring there equals librosa's flooring of the decibels, and Whisper's
    ``max(log10(max(mel, 1e-10)), peak - 8)``). NumPy rather than Numba on purpose:
    NumPy's log10 and max are SIMD-vectorised while a jitted loop calls scalar libm.
    """
    floor = 1e-10
    if top_db is not None:
        floor = max(floor, float(mel.max()) * 10.0 ** (-top_db / 10.0))
    np.maximum(mel, floor, out=mel)
    np.log10(mel, out=mel)


@njit(fastmath={"reassoc", "contract", "nsz"})
def _stack_deltas(static, weights, feat):  # pragma: no cover - jitted
    """Fill ``feat``, ``(rows * (1 + n_orders), n_frames)``, with the static rows and,
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


class FeatureExtractor:
    """The front end of one :class:`FeatureConfig`, with all tables built once.

    Layers as in librosa, each usable alone: :meth:`melspectrogram` (mel power),
    :meth:`log_mel` (its decibels, ``power_to_db``), :meth:`mfcc` (their DCT). Calling
    the extractor gives the model's input: the layer ``config.kind`` names, with deltas,
    time first.

    Parameters
    ----------
    config : FeatureConfig
        Usually read from a model's metadata (see :mod:`serstream.model`).

    Examples
    --------
    >>> fx = FeatureExtractor(FeatureConfig())
    >>> fx(np.zeros(16000, dtype=np.float32)).shape
    (101, 120)
    >>> FeatureExtractor(FeatureConfig(kind="log_mel", n_fft=400, n_mels=80, delta_order=0,
    ...                                pad_mode="reflect", drop_last_frame=True))(np.zeros(16000)).shape
    (100, 80)
    """

    def __init__(self, config: FeatureConfig) -> None:
        self.config = c = config
        self._window = hann_window(c.win_length, c.n_fft)
        nonzero = np.flatnonzero(self._window)
        self._pairs = (int(nonzero[0]) // 2, int(nonzero[-1]) // 2 + 1)  # window's support, in sample pairs
        self._fft = fft_plan(c.n_fft).kernel_args()
        dense = mel_filterbank(sr=c.sr, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax,
                               htk=c.htk, norm=c.norm)
        self._mel_start, self._mel_weights = sparse_rows(dense)
        self._dct10 = 10.0 * dct_matrix(c.n_mfcc, c.n_mels, c.lifter)
        self._delta_weights = np.array(
            [savgol_weights(c.delta_width, order) for order in range(1, c.delta_order + 1)]
        ).reshape(c.delta_order, c.delta_width)
        self._scratch = _Scratch(c.n_fft // 2)

    # ------------------------------------------------------------------ layers
    def _mel_power(self, y: np.ndarray) -> np.ndarray:
        """Mel power into this thread's scratch (overwritten by the next call)."""
        y = _as_mono_float64(y)
        c = self.config
        s = self._scratch
        n_frames = self.n_frames(y.size)
        mel = s.rows("mel", c.n_mels, n_frames)
        offset = c.n_fft // 2
        if c.pad_mode == "reflect":
            y, offset = np.pad(y, offset, mode="reflect"), 0
        mel_power(y, n_frames, self._window, *self._pairs, c.n_fft, c.hop_length, offset,
                  *self._fft, c.power, self._mel_start, self._mel_weights, s.re, s.im, s.spec, mel)
        return mel

    def melspectrogram(self, y: np.ndarray) -> np.ndarray:
        """Mel spectrogram, ``(n_mels, n_frames)`` float64, as ``librosa.feature.melspectrogram``."""
        return self._mel_power(y).copy()

    def log_mel(self, y: np.ndarray) -> np.ndarray:
        """Log-mel in decibels, ``(n_mels, n_frames)`` float64: ``librosa.power_to_db`` of
        :meth:`melspectrogram` with ``ref=1``, ``amin=1e-10`` and ``top_db``."""
        mel = self._mel_power(y)
        _to_bels(mel, self.config.top_db)
        return mel * 10.0

    def mfcc(self, y: np.ndarray) -> np.ndarray:
        """Static MFCC, ``(n_mfcc, n_frames)`` float64: the DCT of :meth:`log_mel`."""
        mel = self._mel_power(y)
        _to_bels(mel, self.config.top_db)
        return self._dct10 @ mel

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Model input for one segment: ``(n_frames, n_features)`` float32, time first."""
        c = self.config
        if c.kind == "mfcc":
            static = self.mfcc(y)
        else:
            static = self._mel_power(y)
            _to_bels(static, c.top_db)
            static *= 10.0
        if c.delta_order == 0:
            return np.ascontiguousarray(static.T, dtype=np.float32)
        feat = self._scratch.rows("feat", c.n_features, static.shape[1])
        _stack_deltas(static, self._delta_weights, feat)
        return np.ascontiguousarray(feat.T, dtype=np.float32)

    def __reduce__(self):
        # the tables are rebuilt from the configuration; thread-local scratch cannot be pickled
        return (type(self), (self.config,))

    def n_frames(self, n_samples: int) -> int:
        return self.config.n_frames(n_samples)

    def warmup(self) -> None:
        """Run every jitted kernel once so the first real segment pays no compile cost."""
        self(np.zeros(self.config.n_fft, dtype=np.float32))


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

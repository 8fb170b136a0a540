"""The jitted core: framing, window, real FFT, power spectrum and mel projection.

One pass over the frames of a segment, in batches of :data:`BATCH` frames with the
frame index innermost, so every butterfly is a vector operation across frames. The
real FFT of ``n_fft`` points is a complex FFT of ``n_fft / 2`` points (even samples as
real part, odd as imaginary), unpacked afterwards. The complex FFT is decimation in
time over a mixed-radix plan: radix-2 digits first, done two at a time as radix-4
sweeps (the tuned path of power-of-two sizes), then one sweep per odd prime factor
(3, 5, 7), so that Whisper's 400-point frame needs no zero-padding to 512.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from serstream.features.config import FFT_RADICES, fft_size_problem
from serstream.features.jit import njit

__all__ = ["BATCH", "FftPlan", "fft_plan", "mel_power"]

# Reassociation lets LLVM vectorise the sums; no 'nnan'/'ninf' so that the -inf/1e-10
# guards keep their meaning.
_FAST = {"reassoc", "contract", "nsz"}
BATCH = 64  # frames transformed together: the innermost loops run across frames (SIMD)


@dataclass(frozen=True)
class FftPlan:
    """Tables for a complex FFT of ``m = n_fft / 2`` points and its real unpacking."""

    slot: np.ndarray  # complex input sample -> its position for the in-place stages
    n_twos: int  # radix-2 digits, done first
    odd: np.ndarray  # odd prime digits, in stage order
    tw_re: np.ndarray  # exp(-2 pi i k / m), k < m
    tw_im: np.ndarray
    rtw_re: np.ndarray  # exp(-2 pi i k / n_fft), k <= m: unpacks the real FFT
    rtw_im: np.ndarray

    def kernel_args(self) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return (self.slot, self.n_twos, self.odd, self.tw_re, self.tw_im, self.rtw_re, self.rtw_im)


def _digit_reversal(digits: list[int]) -> np.ndarray:
    """Which input sample sits at each position before the in-place stages of a
    decimation-in-time FFT whose stage ``s`` has radix ``digits[s]``.

    The last stage (radix ``r``) joins ``r`` sub-transforms stored one after another,
    sub-transform ``j`` being that of the samples ``j, j + r, j + 2r, ...``; each of them
    is ordered the same way by the stages before, hence the build from the first stage out.
    """
    perm = np.zeros(1, dtype=np.int64)
    for r in digits:
        perm = np.concatenate([j + r * perm for j in range(r)])
    return perm


@cache
def fft_plan(n_fft: int) -> FftPlan:
    why = fft_size_problem(n_fft)
    if why is not None:
        raise ValueError(why)
    m = n_fft // 2
    digits: list[int] = []
    rest = m
    for p in FFT_RADICES:
        while rest % p == 0:
            digits.append(p)
            rest //= p
    n_twos = digits.count(2)
    perm = _digit_reversal(digits)
    slot = np.empty_like(perm)
    slot[perm] = np.arange(m)
    tw = np.exp(-2j * np.pi * np.arange(m) / m)
    rtw = np.exp(-2j * np.pi * np.arange(m + 1) / n_fft)
    return FftPlan(
        slot=slot,
        n_twos=n_twos,
        odd=np.array([d for d in digits if d != 2], dtype=np.int64),
        tw_re=np.ascontiguousarray(tw.real), tw_im=np.ascontiguousarray(tw.imag),
        rtw_re=np.ascontiguousarray(rtw.real), rtw_im=np.ascontiguousarray(rtw.imag),
    )


@njit(fastmath=_FAST)
def _project_batch(spec, nb, mel, t0, mel_start, mel_weights):  # pragma: no cover - jitted
    """Sparse mel filterbank on one batch: each filter touches only its own few bins.

    Kept apart, accumulating in a short vector per filter: written inline in the FFT
    kernel and accumulating straight into ``mel``, the same sums took twice as long.
    """
    n_mels, width = mel_weights.shape
    acc = np.empty(BATCH, dtype=np.float64)
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


@njit(fastmath=_FAST)
def _radix_odd(re, im, nb, m, size, p, tw_re, tw_im, t_re, t_im):  # pragma: no cover - jitted
    """One decimation-in-time sweep of odd prime radix ``p``: twiddle, then a direct
    ``p``-point DFT (p <= 7, so O(p^2) costs less than a cleverer butterfly's setup)."""
    span = p * size
    step = m // span
    dstep = m // p
    for base in range(0, m, span):
        for k in range(size):
            for j in range(p):
                a = base + k + j * size
                t = (j * k * step) % m
                wr = tw_re[t]
                wi = tw_im[t]
                for f in range(nb):
                    xr = re[a, f]
                    xi = im[a, f]
                    t_re[j, f] = xr * wr - xi * wi
                    t_im[j, f] = xr * wi + xi * wr
            for q in range(p):
                a = base + k + q * size
                for f in range(nb):
                    re[a, f] = t_re[0, f]
                    im[a, f] = t_im[0, f]
                for j in range(1, p):
                    t = ((j * q) % p) * dstep
                    wr = tw_re[t]
                    wi = tw_im[t]
                    for f in range(nb):
                        re[a, f] += t_re[j, f] * wr - t_im[j, f] * wi
                        im[a, f] += t_re[j, f] * wi + t_im[j, f] * wr


@njit(fastmath=_FAST)
def mel_power(y, n_frames, window, lo, hi, n_fft, hop, offset,  # pragma: no cover - jitted
              slot, n_twos, odd, tw_re, tw_im, rtw_re, rtw_im, power,
              mel_start, mel_weights, re, im, spec, mel):
    """Framing, windowing, |rFFT|**power and mel projection of ``n_frames`` frames, frame
    ``t`` starting at sample ``t * hop - offset`` of ``y`` (zero outside it).

    Centring with zero padding is ``offset = n_fft // 2``; with reflect padding the
    caller pads ``y`` itself (numpy's mirror, repeated for pads longer than the signal)
    and passes ``offset = 0``: the edge frames then need no lookups here, and the hot
    load loop stays the one LLVM vectorises.

    Fills ``mel``, ``(n_mels, >= n_frames)``; ``re``, ``im`` and ``spec`` are scratch
    (``(m, BATCH)``, ``(m, BATCH)``, ``(m + 1, BATCH)``). Each batch's spectrum is
    projected onto the mel filters while it is still in cache, so the full
    ``(1 + n_fft // 2, n_frames)`` spectrogram never exists. Sample pairs ``2j, 2j + 1``
    with ``j`` outside ``[lo, hi)`` fall where the window is zero (``win_length <
    n_fft``) and are not read at all.
    """
    n = y.shape[0]
    pad = offset
    m = n_fft // 2
    n_bins = m + 1
    p_max = 1
    for p in odd:
        p_max = max(p_max, p)
    t_re = np.empty((p_max, BATCH))
    t_im = np.empty((p_max, BATCH))
    for t0 in range(0, n_frames, BATCH):
        nb = min(BATCH, n_frames - t0)
        inside = (t0 * hop - pad) >= 0 and ((t0 + nb - 1) * hop - pad + n_fft) <= n
        for j in range(m):
            if j < lo or j >= hi:
                r = slot[j]
                for f in range(nb):
                    re[r, f] = 0.0
                    im[r, f] = 0.0
        for j in range(lo, hi):
            r = slot[j]
            w0 = window[2 * j]
            w1 = window[2 * j + 1]
            if inside:  # every sample of these frames is inside the signal: vectorised
                for f in range(nb):
                    i0 = (t0 + f) * hop - pad + 2 * j
                    re[r, f] = y[i0] * w0
                    im[r, f] = y[i0 + 1] * w1
            else:
                for f in range(nb):
                    i0 = (t0 + f) * hop - pad + 2 * j
                    re[r, f] = y[i0] * w0 if 0 <= i0 < n else 0.0
                    im[r, f] = y[i0 + 1] * w1 if 0 <= i0 + 1 < n else 0.0
        size = 1  # length of the sub-transforms done so far
        twos = n_twos
        if twos >= 2:
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
            size = 4
            twos -= 2
        # then radix-4 passes: two radix-2 stages per sweep over the data
        while twos >= 2:
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
            twos -= 2
        if twos == 1:  # an odd number of radix-2 stages: one radix-2 sweep to finish them
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
            size *= 2
        for p in odd:
            _radix_odd(re, im, nb, m, size, p, tw_re, tw_im, t_re, t_im)
            size *= p
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
                spec[k, f] = xr * xr + xi * xi
        if power != 2.0:
            for k in range(n_bins):
                for f in range(nb):
                    spec[k, f] = math.sqrt(spec[k, f])
        _project_batch(spec, nb, mel, t0, mel_start, mel_weights)

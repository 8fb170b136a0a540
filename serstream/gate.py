"""A level gate in front of the VAD: only audio that rises above its surroundings can be speech.

WebRTC VAD judges the *shape* of a frame's spectrum and adapts to what it has heard; it
has no idea of level. Fed steady noise it calls much of it speech (20 minutes of white
noise at -20 dBFS gave 121 "segments", 60 s of 50 Hz hum gave 6), and after loud speech
its adapted state can call exact digital silence speech too (a PulseAudio null sink
produces exact zeros). The gate vetoes its decision for a frame that is

- near digital silence: quieter than ``min_level_dbfs``, or
- not above the noise floor: less than ``noise_margin_db`` above the quietest level
  (smoothed over ~90 ms) of the last ``noise_window_ms``. Steady noise sits *at* that
  floor, so it never passes, however speech-like its spectrum; speech rises above it
  (its syllables by 10-30 dB, even at 10 dB SNR), and the pauses between words keep the
  floor down where the noise is.

Levels are measured above ``LOW_CUT_HZ`` (a Hann-windowed frame, less the power of its
lowest DFT bins): rumble, wind, mains hum and the sub-audio wander of pink noise live
down there, and would make a steady noise look unsteady. The few low bins are one small
matrix product, so a frame (10-30 ms) costs a few microseconds, about as much as
WebRTC's own decision.
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["LevelGate"]

_SMOOTH_FRAMES = 3  # the floor follows ~90 ms averages, so one quiet frame cannot drag it down
LOW_CUT_HZ = 150.0  # below this (and the window's main lobe around it), power does not count


class LevelGate:
    """Decide, frame by frame, whether a frame is loud enough to be speech.

    Parameters
    ----------
    frame_length : int
        Samples per frame (every call gets exactly this many).
    sr : int
    min_level_dbfs : float
        Frames whose RMS is below this (dB relative to full scale) are never speech.
    noise_margin_db : float
        How far above the tracked noise floor a frame must be.
    window_frames : int
        How many frames back the floor is the minimum of.

    Examples
    --------
    >>> gate = LevelGate(480, 16000, -60.0, 6.0, window_frames=50)
    >>> noise = np.random.default_rng(0).standard_normal((100, 480)).astype(np.float32) * 0.1
    >>> any(gate(f) for f in noise)  # steady noise never rises above its own floor
    False
    >>> gate(noise[0] * 10)  # 20 dB above it
    True
    """

    def __init__(self, frame_length: int, sr: int, min_level_dbfs: float, noise_margin_db: float,
                 window_frames: int) -> None:
        n = frame_length
        window = np.hanning(n)
        self._window_fn = window.astype(np.float32)
        # the DFT bins below the cut, as rows of a matrix applied to the raw frame:
        # Parseval gives the windowed frame's power as n * sum(xw^2); less theirs
        low = int(np.ceil(LOW_CUT_HZ * n / sr))
        t = np.arange(n)
        rows = [window] + [window * fn(2 * np.pi * k * t / n) for k in range(1, low + 1) for fn in (np.cos, np.sin)]
        weights = [1.0] + [2.0] * (2 * low)  # bins 1..low stand for their mirror images too
        self._low = (np.asarray(rows) * np.sqrt(np.asarray(weights))[:, None]).astype(np.float32)
        self._n = n
        self._min_power = 10.0 ** (min_level_dbfs / 10.0)
        self._margin = 10.0 ** (noise_margin_db / 10.0)
        self._window = max(1, int(window_frames))
        self.reset()

    def reset(self) -> None:
        """A new stream: no floor yet (the first frames set it)."""
        self._recent: deque[float] = deque(maxlen=_SMOOTH_FRAMES)
        self._minima: deque[tuple[int, float]] = deque()  # (frame, smoothed power), increasing power
        self._frame = 0
        self.floor_power = 0.0

    def silent(self, frame: np.ndarray) -> bool:
        """``frame`` is at or near digital silence: never speech."""
        return float(np.dot(frame, frame)) / frame.shape[0] < self._min_power

    def __call__(self, frame: np.ndarray) -> bool:
        """True when ``frame`` (float samples, full scale 1.0) rises above the noise floor
        in the speech band."""
        xw = frame * self._window_fn
        low = self._low @ frame
        power = max(0.0, self._n * float(np.dot(xw, xw)) - float(np.dot(low, low)))
        self._recent.append(power)
        smoothed = sum(self._recent) / len(self._recent)
        i = self._frame
        self._frame += 1
        minima = self._minima
        while minima and minima[-1][1] >= smoothed:  # sliding-window minimum, O(1) amortised
            minima.pop()
        minima.append((i, smoothed))
        while minima[0][0] <= i - self._window:
            minima.popleft()
        self.floor_power = minima[0][1]
        return power > self.floor_power * self._margin and not self.silent(frame)

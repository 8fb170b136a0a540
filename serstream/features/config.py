"""What decides the numbers a model sees: one frozen configuration, stored in the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from serstream.limits import is_int, is_number, strict_fields

__all__ = ["FEATURE_KINDS", "FeatureConfig", "FeatureConfigError", "fft_size_problem"]

# The layer a model takes: the log-mel spectrogram (a pretrained speech encoder's input)
# or the MFCC computed from it (a small network's). librosa layers them the same way.
FEATURE_KINDS = ("mfcc", "log_mel")
PAD_MODES = ("constant", "reflect")
MAX_N_FFT = 16384  # 1 s at 16 kHz; beyond it a "frame" is no longer a speech frame
MAX_HOP = 16384
MAX_N_MELS = 512
FFT_RADICES = (2, 3, 5, 7)  # the prime factors of n_fft / 2 that the FFT kernel handles


class FeatureConfigError(ValueError):
    """A feature configuration this code cannot reproduce exactly."""


def fft_size_problem(n_fft: int) -> str | None:
    """Why ``n_fft`` cannot be transformed here, or None.

    The real FFT is a complex FFT of ``n_fft / 2`` points in passes of radix 2 and 4
    (the tuned path) and of small odd primes (3, 5, 7: Whisper's 400-point frame is
    2^3 x 5^2 after halving); larger prime factors would need an O(n^2) pass.
    """
    if n_fft < 16 or n_fft > MAX_N_FFT or n_fft % 2:
        return f"n_fft must be even and in [16, {MAX_N_FFT}], got {n_fft}"
    m = n_fft // 2
    for p in FFT_RADICES:
        while m % p == 0:
            m //= p
    if m != 1:
        return f"n_fft / 2 must have no prime factor above 7 (such as 256, 200, 240), got n_fft={n_fft}"
    return None


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that decides the numbers a model sees.

    Stored verbatim in every exported model's metadata; the daemon rebuilds its
    extractor from it and refuses a model whose configuration it cannot reproduce.
    Parameter names and meanings are librosa's (``melspectrogram``, ``power_to_db``,
    ``mfcc``, ``delta``). Defaults suit 16 kHz speech: 25 ms Hann windows every 10 ms,
    a 512-point FFT, 40 MFCCs with deltas.

    ``kind`` names the layer the model takes: ``"mfcc"`` (``n_mfcc`` coefficients) or
    ``"log_mel"`` (the ``n_mels`` decibel values beneath them, ``power_to_db`` with
    ``ref=1``, ``amin=1e-10`` and ``top_db``). ``drop_last_frame`` removes the final
    centred frame, as Whisper's front end does (its STFT has ``1 + n // hop`` frames and
    it keeps ``n // hop``); at least one frame is always kept.
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
    kind: str = "mfcc"
    drop_last_frame: bool = False

    def __post_init__(self) -> None:
        problems = self._type_problems()
        if problems:
            raise FeatureConfigError("; ".join(problems))
        if not 8000 <= self.sr <= 192000:
            problems.append(f"sr must be in [8000, 192000] Hz, got {self.sr}")
        if (why := fft_size_problem(self.n_fft)) is not None:
            problems.append(why)
        if not 0 < self.win_length <= self.n_fft:
            problems.append(f"win_length must be in (0, n_fft], got {self.win_length}")
        if not 0 < self.hop_length <= MAX_HOP:
            problems.append(f"hop_length must be in [1, {MAX_HOP}], got {self.hop_length}")
        if self.window != "hann":
            problems.append(f"window {self.window!r} is not supported (only 'hann')")
        if not self.center:
            problems.append("center=False is not supported")
        if self.pad_mode not in PAD_MODES:
            problems.append(f"pad_mode {self.pad_mode!r} is not supported ({' or '.join(PAD_MODES)})")
        if self.power not in (1.0, 2.0):
            problems.append(f"power must be 1.0 or 2.0, got {self.power}")
        fmax = self.sr / 2 if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= self.sr / 2:
            problems.append(f"need 0 <= fmin < fmax <= sr/2, got fmin={self.fmin}, fmax={fmax}")
        if not 1 <= self.n_mels <= MAX_N_MELS:
            problems.append(f"n_mels must be in [1, {MAX_N_MELS}], got {self.n_mels}")
        if self.norm not in (None, "slaney"):
            problems.append(f"norm {self.norm!r} is not supported (None or 'slaney')")
        if not 1 <= self.n_mfcc <= self.n_mels:
            problems.append(f"n_mfcc must be in [1, n_mels], got {self.n_mfcc}")
        if self.top_db is not None and not 0 <= self.top_db <= 400:
            problems.append(f"top_db must be in [0, 400] dB, got {self.top_db}")
        if not 0 <= self.lifter <= 1000:
            problems.append(f"lifter must be in [0, 1000], got {self.lifter}")
        if self.delta_order not in (0, 1, 2):
            problems.append(f"delta_order must be 0, 1 or 2, got {self.delta_order}")
        if not 3 <= self.delta_width <= 99 or self.delta_width % 2 == 0:
            problems.append(f"delta_width must be odd and in [3, 99], got {self.delta_width}")
        if self.kind not in FEATURE_KINDS:
            problems.append(f"feature kind {self.kind!r} is not one of {', '.join(FEATURE_KINDS)}")
        if problems:
            raise FeatureConfigError("; ".join(problems))

    def _type_problems(self) -> list[str]:
        """Types first: a metadata document may say ``160.5`` or ``true`` for a length."""
        problems = []
        for name in ("sr", "n_fft", "win_length", "hop_length", "n_mels", "n_mfcc", "delta_order", "delta_width"):
            if not is_int(getattr(self, name)):
                problems.append(f"{name} must be an integer, got {getattr(self, name)!r}")
        for name in ("power", "fmin", "lifter"):
            if not is_number(getattr(self, name)):
                problems.append(f"{name} must be a number, got {getattr(self, name)!r}")
        for name in ("fmax", "top_db"):
            v = getattr(self, name)
            if v is not None and not is_number(v):
                problems.append(f"{name} must be a number or null, got {v!r}")
        for name in ("center", "htk", "drop_last_frame"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("window", "pad_mode", "kind"):
            if not isinstance(getattr(self, name), str):
                problems.append(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.norm is not None and not isinstance(self.norm, str):
            problems.append(f"norm must be a string or null, got {self.norm!r}")
        return problems

    @property
    def n_static(self) -> int:
        """Values per frame before deltas: MFCCs or mel bands, by ``kind``."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    @property
    def n_features(self) -> int:
        """Width of one frame as the model sees it (static + delta coefficients)."""
        return self.n_static * (1 + self.delta_order)

    def n_frames(self, n_samples: int) -> int:
        """Frames for ``n_samples`` of audio: ``1 + n // hop`` centred frames, less the
        last one with ``drop_last_frame`` (never fewer than one)."""
        n = 1 + n_samples // self.hop_length
        return max(1, n - 1) if self.drop_last_frame else n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        """Strict inverse of :meth:`to_dict`: an unknown key means a feature this code lacks."""
        return cls(**strict_fields(cls, data, "feature settings", FeatureConfigError))

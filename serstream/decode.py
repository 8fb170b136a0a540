"""Audio files to 16 kHz mono float32, with one-line errors for everything a file can get wrong.

Used by ``serstream replay`` and by ``train/`` so both read audio the same way:
any format libsndfile reads (wav, flac, ogg/vorbis/opus, ...), any channel count
(averaged to mono), any sample rate (resampled with soxr).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from serstream.errors import AudioFileError

__all__ = ["STDIN", "DecodedAudio", "AudioStream", "Resampler", "open_audio", "load_audio", "to_mono"]


@dataclass(frozen=True)
class DecodedAudio:
    """Samples at the requested rate, plus what the file originally was (for messages)."""

    samples: np.ndarray  # float32, mono, in [-1, 1] after sanitising
    sr: int
    source_sr: int
    source_channels: int
    non_finite: int  # NaN/inf samples that were replaced by 0

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / self.sr


def to_mono(block: np.ndarray) -> np.ndarray:
    """Average channels; a 1-D array is returned as is."""
    if block.ndim == 1:
        return block
    if block.shape[1] == 1:
        return block[:, 0]
    return block.mean(axis=1, dtype=np.float32)


class Resampler:
    """Mono float32 from ``sr_in`` to ``sr_out``, block by block (soxr, HQ), carrying
    the filter's state across blocks; a pass-through when the rates agree.

    One implementation for files (decoded at their own rate) and devices (captured at
    theirs): both reach the VAD resampled the same way.
    """

    def __init__(self, sr_in: int, sr_out: int) -> None:
        self._stream = (
            soxr.ResampleStream(sr_in, sr_out, 1, dtype="float32", quality="HQ") if sr_in != sr_out else None
        )

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        """The resampled block; ``last=True`` also returns what the filter still holds."""
        if self._stream is None:
            return x
        return self._stream.resample_chunk(x, last=last)


STDIN = "-"  # the path that means standard input (`sox ... -t wav - | serstream replay -`)


def _check_path(path: Path) -> None:
    """What a path can be told by its inode, as one line; every OS error (a folder without
    permission, a name too long) is this file's failure, never the whole batch's."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioFileError(f"{path}: no such file") from None
    except OSError as exc:
        raise AudioFileError(f"{path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise AudioFileError(f"{path}: is a directory, not an audio file")
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:  # a FIFO or a device says 0 and is read
        raise AudioFileError(f"{path}: empty file (0 bytes)")


def _seekable(path: Path) -> bool:
    try:
        if str(path) == STDIN:
            os.lseek(0, 0, os.SEEK_CUR)  # ESPIPE on a pipe
            return True
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return str(path) != STDIN


def _open(path: Path) -> sf.SoundFile:
    """libsndfile on a file, or on standard input for ``-``. A pipe is read as it comes
    (WAV, AIFF, AU and raw carry through one; FLAC and Ogg need to seek, so a file)."""
    if str(path) == STDIN:
        if os.isatty(0):
            raise AudioFileError("stdin is a terminal: pipe audio into `serstream replay -`")
        return sf.SoundFile(0, closefd=False)
    _check_path(path)
    return sf.SoundFile(str(path))


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text


class AudioStream:
    """A file decoded block by block to mono float32 at ``sr``: constant memory
    whatever the file's length (a replayed hour of audio must not sit in RAM).

    NaN/inf samples become 0 (counted in ``non_finite``); samples beyond [-1, 1] are
    clipped, as a microphone would.
    """

    def __init__(self, path: str | Path, sr: int = 16000, blocksize: int = 16384) -> None:
        self.path = Path(path)
        try:
            self._file = _open(self.path)
        except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError) as exc:
            hint = "" if _seekable(self.path) else "; through a pipe, send WAV, AIFF or AU (FLAC and Ogg need a file)"
            raise AudioFileError(f"{self.path}: cannot decode audio ({_reason(exc)}){hint}") from None
        if self._file.frames == 0:
            self._file.close()
            raise AudioFileError(f"{self.path}: contains no audio samples")
        self.sr = sr
        self.source_sr = int(self._file.samplerate)
        self.source_channels = int(self._file.channels)
        self.blocksize = blocksize
        self.non_finite = 0
        self.frames_in = 0
        self._resampler = Resampler(self.source_sr, sr)

    def __iter__(self):
        try:
            while True:
                try:
                    data = self._file.read(self.blocksize, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
                    raise AudioFileError(
                        f"{self.path}: decoding failed after {self.frames_in} frames ({_reason(exc)})"
                    ) from None
                last = data.shape[0] < self.blocksize
                self.frames_in += data.shape[0]
                mono = np.ascontiguousarray(to_mono(data), dtype=np.float32)
                bad = ~np.isfinite(mono)
                if bad.any():
                    self.non_finite += int(bad.sum())
                    mono[bad] = 0.0
                mono = self._resampler(mono, last=last)
                # after resampling: its ringing can overshoot full scale
                np.clip(mono, -1.0, 1.0, out=mono)
                if mono.size:
                    yield mono
                if last:
                    break
        finally:
            self.close()
        if self.frames_in == 0:
            raise AudioFileError(f"{self.path}: contains no audio samples")
        if self.non_finite == self.frames_in:
            raise AudioFileError(f"{self.path}: every sample is NaN or infinite")

    def close(self) -> None:
        self._file.close()


def open_audio(path: str | Path, sr: int = 16000, blocksize: int = 16384) -> AudioStream:
    """Open ``path`` for block-wise decoding; header problems raise :class:`AudioFileError` here."""
    return AudioStream(path, sr, blocksize)


def load_audio(path: str | Path, sr: int = 16000) -> DecodedAudio:
    """Read a whole file as mono float32 at ``sr``.

    Raises
    ------
    AudioFileError
        Missing, unreadable, corrupt, empty or zero-length files, with the reason in one line.
    """
    stream = open_audio(path, sr, blocksize=1 << 20)
    blocks = list(stream)
    samples = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    if samples.size == 0:
        raise AudioFileError(f"{stream.path}: too short to resample to {sr} Hz")
    return DecodedAudio(
        np.ascontiguousarray(samples, dtype=np.float32), sr, stream.source_sr,
        stream.source_channels, stream.non_finite,
    )

"""Microphone capture: a PortAudio input stream whose callback only fills the ring.

The callback runs on PortAudio's real-time thread. It copies the block into the
preallocated ring and counts what it must (status flags, overflows); it never
allocates a buffer, takes a lock or waits. Everything else happens on the pipeline's
thread. If the device cannot run at the model's rate, it runs at its own and the
pipeline resamples with soxr before the VAD.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from serstream.errors import DeviceError
from serstream.ring import RingBuffer

__all__ = ["MicSource", "list_input_devices", "resolve_device"]

log = logging.getLogger(__name__)


def _sd():
    """Import sounddevice lazily: replay and listen must work without PortAudio."""
    try:
        import sounddevice as sd
    except OSError as exc:  # libportaudio missing
        raise DeviceError(f"PortAudio is not available ({exc}); install libportaudio2") from None
    return sd


def list_input_devices() -> list[dict[str, Any]]:
    sd = _sd()
    try:
        devices = sd.query_devices()
        default_in = sd.default.device[0]
    except sd.PortAudioError as exc:
        raise DeviceError(f"cannot list audio devices: {exc}") from None
    out = []
    for i, d in enumerate(devices):
        if d["max_input_channels"] > 0:
            out.append({
                "index": i,
                "name": d["name"],
                "channels": d["max_input_channels"],
                "default_samplerate": d["default_samplerate"],
                "hostapi": sd.query_hostapis(d["hostapi"])["name"],
                "default": i == default_in,
            })
    return out


def resolve_device(device: str | int | None) -> tuple[int | None, dict[str, Any]]:
    """An input device by index, by (part of) its name, or the default one."""
    sd = _sd()
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    try:
        info = sd.query_devices(device, kind="input")
    except ValueError as exc:
        msg = str(exc).splitlines()[0]
        if device is None:
            raise DeviceError(f"no default audio input device ({msg})") from None
        raise DeviceError(f"no input device matches {device!r} ({msg}); see `serstream devices`") from None
    except sd.PortAudioError as exc:
        what = "no audio input device available" if device is None else f"input device {device!r} unavailable"
        raise DeviceError(f"{what} (PortAudio: {exc}); see `serstream devices`") from None
    if info["max_input_channels"] < 1:
        raise DeviceError(f"device {info['name']!r} has no input channels")
    return info["index"], dict(info)


class MicSource:
    """Live input from a PortAudio device into a ring buffer."""

    def __init__(
        self,
        device: str | int | None = None,
        sr: int = 16000,
        samplerate: int | None = None,
        channels: int = 1,
        blocksize: int = 0,
        ring_seconds: float = 4.0,
        source_id: str | None = None,
    ) -> None:
        sd = _sd()
        self._sd = sd
        self.device, info = resolve_device(device)
        self.device_name = info["name"]
        self.channels = channels
        self.sample_rate = samplerate or self._pick_rate(sr, int(info["default_samplerate"]))
        self.source_id = source_id or f"mic:{self.device_name}"
        self.ring = RingBuffer(int(self.sample_rate * ring_seconds), channels)
        self.callbacks = 0
        self.status_flags = 0
        self.input_overflows = 0
        self.started_at: float | None = None
        try:
            self._stream = sd.InputStream(
                device=self.device,
                samplerate=self.sample_rate,
                channels=channels,
                dtype="float32",
                blocksize=blocksize,
                latency="low",
                callback=self._callback,
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise DeviceError(f"cannot open input device {self.device_name!r}: {exc}") from None

    def _pick_rate(self, wanted: int, default: int) -> int:
        try:
            self._sd.check_input_settings(device=self.device, samplerate=wanted, channels=self.channels)
            return wanted
        except Exception:
            log.info("device does not take %d Hz; capturing at %d Hz and resampling", wanted, default)
            return default

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio thread
        self.callbacks += 1
        if status:
            self.status_flags += 1
            if status.input_overflow:
                self.input_overflows += 1
        self.ring.write(indata)

    def start(self) -> None:
        try:
            self._stream.start()
        except self._sd.PortAudioError as exc:
            raise DeviceError(f"cannot start input device {self.device_name!r}: {exc}") from None
        self.started_at = time.monotonic()

    def finished(self) -> bool:
        return not self._stream.active and self.started_at is not None and self._stream.stopped is False

    def close(self) -> None:
        # closing a vanished device must not mask the real reason it vanished
        with contextlib.suppress(Exception):
            self._stream.close(ignore_errors=True)

    def health(self) -> dict[str, Any]:
        return {
            "device": "ok" if self._stream.active else "stopped",
            "device_name": self.device_name,
            "device_samplerate": self.sample_rate,
            "callbacks": self.callbacks,
            "status_flags": self.status_flags,
            "input_overflows": self.input_overflows,
        }

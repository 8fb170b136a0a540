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
from dataclasses import dataclass
from typing import Any

from serstream.errors import DeviceError
from serstream.events import MicHealth
from serstream.limits import bounded, check
from serstream.ratelog import RateLimitedLog
from serstream.ring import RingBuffer

__all__ = ["CaptureConfig", "MicSource", "list_input_devices", "resolve_device"]

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
        msg = str(exc).splitlines()[0].rstrip(":")
        if device is None:
            raise DeviceError(f"no default audio input device ({msg})") from None
        if msg.startswith("No input device matching"):  # sounddevice's words for what we say
            raise DeviceError(f"no input device matches {device!r}; see `serstream devices`") from None
        raise DeviceError(f"input device {device!r}: {msg}; see `serstream devices`") from None
    except sd.PortAudioError as exc:
        what = "no audio input device available" if device is None else f"input device {device!r} unavailable"
        raise DeviceError(f"{what} (PortAudio: {exc}); see `serstream devices`") from None
    if info["max_input_channels"] < 1:
        raise DeviceError(f"device {info['name']!r} has no input channels")
    return info["index"], dict(info)


@dataclass(frozen=True)
class CaptureConfig:
    """Which input device, and how to open and watch it.

    ``device``: an index or (part of) a name; None is the system default.
    ``samplerate``: None captures at the model's rate if the device takes it, else at
    the device's own (the pipeline resamples). ``blocksize`` 0 lets PortAudio choose
    the lowest latency it can sustain. ``ring_seconds`` is the processing stall the
    ring absorbs before audio is lost (and counted as overflows). A stream with no
    callback for ``stall_timeout`` s is taken as lost and reopened, waiting at most
    ``max_backoff`` s between tries.
    """

    device: str | int | None = None
    samplerate: int | None = bounded(None, 8000, 384_000, "Hz", optional=True)
    channels: int = bounded(1, 1, 64)
    blocksize: int = bounded(0, 0, 65_536, "frames")
    source_id: str | None = None
    ring_seconds: float = bounded(4.0, 0.1, 600.0, "s")
    stall_timeout: float = bounded(2.0, 0.1, 60.0, "s")
    max_backoff: float = bounded(5.0, 0.1, 300.0, "s")

    def __post_init__(self) -> None:
        check(self)


class MicSource:
    """Live input from a PortAudio device into a ring buffer, kept alive across faults.

    A microphone can be unplugged, or a sound server restarted, under a running
    daemon. :meth:`poll` (called by the pipeline between reads) notices a stream that
    stopped (PortAudio ended it) or went silent (no callback for ``stall_timeout``
    seconds), closes it and reopens the same device with exponential backoff,
    re-scanning PortAudio's device list each time. Meanwhile the daemon keeps serving
    subscribers; ``health()`` (in every stats message) says the device is ``lost``.
    ``generation`` counts reopenings so the pipeline can close the segment that the
    gap interrupted.
    """

    def __init__(self, config: CaptureConfig | None = None, sr: int = 16000) -> None:
        config = config or CaptureConfig()
        self.config = config
        self._sd = _sd()
        self._wanted_sr = sr
        self.channels = config.channels
        self.device, info = resolve_device(config.device)
        self.device_name = info["name"]
        self.sample_rate = config.samplerate or self._pick_rate(sr, int(info["default_samplerate"]))
        self.source_id = config.source_id or f"mic:{self.device_name}"
        self.ring = RingBuffer(int(self.sample_rate * config.ring_seconds), config.channels)
        self.callbacks = 0
        self.status_flags = 0  # callbacks that carried a PortAudio status flag
        self.input_overflows = 0  # of which: input overflow, audio lost before it reached us
        self._flags_reported = 0
        self._status_log = RateLimitedLog(log)
        self.state = "closed"
        self.generation = 0
        self.reconnects = 0
        self.lost_since: float | None = None
        self._backoff = 0.25
        self._next_retry = 0.0
        self._seen_callbacks = 0
        self._last_progress = 0.0
        self._stream = self._open()

    def _open(self):
        sd = self._sd
        try:
            return sd.InputStream(
                device=self.device,
                samplerate=self.sample_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=self.config.blocksize,
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
        self.state = "ok"
        self._last_progress = time.monotonic()
        self._seen_callbacks = self.callbacks

    def finished(self) -> bool:
        """A microphone never runs out: faults are handled by :meth:`poll`."""
        return False

    def wait(self, timeout: float) -> None:
        """Poll: the PortAudio callback must not take the lock an Event would need."""
        time.sleep(timeout)

    def poll(self) -> bool:
        """Watch the stream; reopen it when it died. True when the state changed."""
        self._report_status()
        now = time.monotonic()
        if self.state == "ok":
            if self.callbacks != self._seen_callbacks:
                self._seen_callbacks = self.callbacks
                self._last_progress = now
                return False
            if self._stream.active and now - self._last_progress < self.config.stall_timeout:
                return False
            why = "stopped" if not self._stream.active else f"silent for {now - self._last_progress:.1f} s"
            log.warning("input device %r %s: retrying in the background", self.device_name, why)
            self._close_stream()
            self.state = "lost"
            self.lost_since = now
            self._backoff = 0.25
            self._next_retry = now + self._backoff
            self.generation += 1
            return True
        if self.state == "lost" and now >= self._next_retry:
            try:
                self._reopen()
            except Exception as exc:  # any PortAudio failure: try again later
                self._backoff = min(self._backoff * 2, self.config.max_backoff)
                self._next_retry = time.monotonic() + self._backoff
                log.debug("reopening %r failed (%s); next try in %.2f s", self.device_name, exc, self._backoff)
                return False
            self.reconnects += 1
            self.generation += 1
            log.warning("input device %r is back after %.1f s", self.device_name, now - (self.lost_since or now))
            self.lost_since = None
            return True
        return False

    def _report_status(self) -> None:
        """PortAudio's status flags, said here on the pipeline's thread (the callback may
        not log): at once, then once a minute at most."""
        if self.status_flags != self._flags_reported:
            self._flags_reported = self.status_flags
            self._status_log("status", "PortAudio flagged %d callbacks of %r so far (%d input overflows: audio "
                             "lost before it reached serstream)", self.status_flags, self.device_name,
                             self.input_overflows)

    def _reopen(self) -> None:
        sd = self._sd
        sd._terminate()  # re-scan devices: the one that came back may have a new index
        sd._initialize()
        self.device, info = resolve_device(self.config.device)
        self.device_name = info["name"]
        rate = self.config.samplerate or self._pick_rate(self._wanted_sr, int(info["default_samplerate"]))
        if rate != self.sample_rate:
            raise DeviceError(f"device came back at {rate} Hz instead of {self.sample_rate} Hz")
        self._stream = self._open()
        self.start()

    def _close_stream(self) -> None:
        # closing a vanished device must not mask the real reason it vanished
        with contextlib.suppress(Exception):
            self._stream.close(ignore_errors=True)

    def close(self) -> None:
        self._close_stream()
        self.state = "closed"

    def health(self) -> MicHealth:
        return MicHealth(
            device=self.state,
            device_name=self.device_name,
            device_samplerate=self.sample_rate,
            callbacks=self.callbacks,
            reconnects=self.reconnects,
            lost_for_s=None if self.lost_since is None else round(time.monotonic() - self.lost_since, 2),
        )

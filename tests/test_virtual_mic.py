"""The virtual microphone the live tests rely on: PortAudio's default input hears what
``virtual_mic.play`` plays into the PulseAudio null sink, in real time."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sounddevice as sd
import soundfile as sf

from audio import SR, clip_path, rms
from serstream.vad import trim


@pytest.fixture(scope="module")
def mic(virtual_mic):
    # PortAudio lists devices when initialised; the server may have come up after import
    sd._terminate()
    sd._initialize()
    return virtual_mic


class _Recorder:
    """The default input device, recorded from one stream opened before anything plays,
    so the silence and the playback are measured on the same, already running, stream
    (opening a stream through the ALSA pulse plugin can take a second or two)."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.stream = sd.InputStream(samplerate=SR, channels=1, dtype="float32", callback=self._callback)

    def _callback(self, indata, frames, time_info, status) -> None:
        self.blocks.append(indata[:, 0].copy())

    def wait_for(self, seconds: float, timeout: float = 15.0) -> np.ndarray:
        """Block until ``seconds`` more audio has arrived; return just that audio."""
        have = len(self.blocks)
        need = int(seconds * SR)
        deadline = time.monotonic() + timeout
        while sum(b.size for b in self.blocks[have:]) < need:
            assert time.monotonic() < deadline, "the input stream delivers no audio"
            time.sleep(0.02)
        return np.concatenate(self.blocks[have:])[:need]


def test_an_input_device_is_listed(mic):
    devices = sd.query_devices()
    assert any(d["max_input_channels"] > 0 for d in devices), devices
    default = sd.query_devices(kind="input")
    assert default["max_input_channels"] > 0, default


@pytest.mark.parametrize("source", ["file", "array"])
def test_default_input_hears_what_is_played(mic, source):
    path = clip_path("savee")  # speech from ~0.4 s to the end (3.6 s)
    rec = _Recorder()
    with rec.stream:
        silence = rec.wait_for(0.5)  # nothing playing: the monitor of an idle null sink
        if source == "file":
            player = mic.play(path)
        else:
            player = mic.play(trim(sf.read(path, dtype="float32")[0]), SR)
        try:
            heard = rec.wait_for(1.5)
            assert player.poll() in (None, 0), player.stderr.read().decode(errors="replace")
        finally:
            player.terminate()  # the rest of the clip is not needed
            player.wait(timeout=10)
    assert np.isfinite(heard).all() and heard.size == int(1.5 * SR)
    assert rms(heard) > 1e-3 and rms(heard) > 10 * rms(silence), (rms(heard), rms(silence))

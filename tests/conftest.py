"""Shared fixtures: the corpora, and a real microphone path without a sound card.

``virtual_mic`` makes sure a PulseAudio server runs with a null sink ``vmic`` whose
monitor is the default source: PortAudio (through ALSA's pulse plugin) then captures
whatever is played into ``vmic`` as a live input device, in real time, through the
same sounddevice code as a physical microphone (see ../shared/virtual-mic.md).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procs  # noqa: E402 - needs the path above
from audio import DATA  # noqa: E402
from audio import speech_clip as _speech_clip  # noqa: E402
from tiny_model import build as _build_tiny  # noqa: E402

APT_PACKAGES = "pulseaudio pulseaudio-utils libasound2-plugins libportaudio2"


@pytest.fixture(autouse=True)
def _stop_what_the_test_started() -> Iterator[None]:
    """After each test, before anything restores the machine: no daemon or player the
    test started outlives it, whatever the test did or failed to do."""
    yield
    procs.reap()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``../shared/data``: the four corpora. Missing corpora fail the test, never skip it."""
    assert DATA.is_dir(), f"corpora not found at {DATA} (expected ../shared/data beside the repo)"
    return DATA


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    """A small real ONNX model with serstream metadata (see tiny_model.py): fast to load,
    so tests of the daemon's behaviour do not wait on the shipped model."""
    return _build_tiny(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture(scope="session")
def speech_clip(data_dir: Path) -> Callable[..., np.ndarray]:
    """``speech_clip(corpus, index=0)``: a real clip as 16 kHz mono float32 (read-only)."""
    return _speech_clip


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


class VirtualMic:
    """Play audio into the PulseAudio null sink that the default input device hears."""

    sink = "vmic"

    def __init__(self) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="vmic-"))
        self._count = 0

    def play(self, audio: str | Path | np.ndarray, sr: int = 16000) -> subprocess.Popen:
        """Start ``paplay --device=vmic``; an array is written to a temporary wav first.

        Returns the Popen: ``.wait()`` on it to block until the audio has been played.
        """
        path = self._tmp_wav(audio, sr) if isinstance(audio, np.ndarray) else Path(audio)
        return procs.track(subprocess.Popen(["paplay", f"--device={self.sink}", str(path)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

    def _tmp_wav(self, y: np.ndarray, sr: int) -> Path:
        self._count += 1
        path = self._tmp / f"play-{self._count}.wav"
        sf.write(path, y, sr, subtype="FLOAT")
        return path

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


def ensure_virtual_mic() -> None:
    """Start PulseAudio with the ``vmic`` null sink (or add the sink to a running server)
    and make its monitor the default source. Idempotent; fails (never skips) when the
    PulseAudio binaries are not installed."""
    missing = [b for b in ("pulseaudio", "pactl", "paplay") if shutil.which(b) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: install the Debian packages {APT_PACKAGES} "
                    "(bash .ci/run does)", pytrace=False)
    changed = False
    if _run("pactl", "info").returncode != 0:
        r = _run("pulseaudio", "-D", "--exit-idle-time=-1", "-n",
                 "--load=module-null-sink sink_name=vmic", "--load=module-native-protocol-unix")
        deadline = time.monotonic() + 10
        while _run("pactl", "info").returncode != 0:
            assert time.monotonic() < deadline, f"PulseAudio did not start: {r.stderr.strip()}"
            time.sleep(0.2)
        changed = True
    sinks = _run("pactl", "list", "short", "sinks").stdout
    if "vmic" not in [line.split("\t")[1] for line in sinks.splitlines() if "\t" in line]:
        r = _run("pactl", "load-module", "module-null-sink", "sink_name=vmic")
        assert r.returncode == 0, f"cannot load the vmic null sink: {r.stderr.strip()}"
        changed = True
    r = _run("pactl", "set-default-source", "vmic.monitor")
    assert r.returncode == 0, f"cannot make vmic.monitor the default source: {r.stderr.strip()}"
    if changed and "sounddevice" in sys.modules:
        # PortAudio lists devices when it is initialised: re-scan now that the server is up
        sd = sys.modules["sounddevice"]
        sd._terminate()
        sd._initialize()


@pytest.fixture(scope="session")
def virtual_mic() -> Iterator[VirtualMic]:
    ensure_virtual_mic()
    mic = VirtualMic()
    yield mic
    mic.close()

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
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert DATA.is_dir(), f"corpora not found at {DATA} (expected ../shared/data beside the repo)"
    return DATA


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


class VirtualMic:
    """Play audio into the PulseAudio null sink that the default input device hears."""

    sink = "vmic"

    def play(self, audio: Path | np.ndarray, sr: int = 16000) -> subprocess.Popen:
        path = Path(audio) if not isinstance(audio, np.ndarray) else self._tmp_wav(audio, sr)
        return subprocess.Popen(["paplay", f"--device={self.sink}", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @staticmethod
    def _tmp_wav(y: np.ndarray, sr: int) -> Path:
        with tempfile.NamedTemporaryFile(suffix=".wav", delete=False) as f:
            path = Path(f.name)
        sf.write(path, y, sr)
        return path


def ensure_virtual_mic() -> None:
    missing = [b for b in ("pulseaudio", "pactl", "paplay") if shutil.which(b) is None]
    assert not missing, (
        f"{', '.join(missing)} not found: install the Debian packages pulseaudio pulseaudio-utils "
        "libasound2-plugins libportaudio2 (bash .ci/run does)"
    )
    if _run("pactl", "info").returncode != 0:
        r = _run("pulseaudio", "-D", "--exit-idle-time=-1", "-n",
                 "--load=module-null-sink sink_name=vmic", "--load=module-native-protocol-unix")
        deadline = time.monotonic() + 10
        while _run("pactl", "info").returncode != 0:
            assert time.monotonic() < deadline, f"PulseAudio did not start: {r.stderr.strip()}"
            time.sleep(0.2)
    if "vmic" not in _run("pactl", "list", "short", "sinks").stdout:
        r = _run("pactl", "load-module", "module-null-sink", "sink_name=vmic")
        assert r.returncode == 0, r.stderr
    r = _run("pactl", "set-default-source", "vmic.monitor")
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="session")
def virtual_mic() -> VirtualMic:
    ensure_virtual_mic()
    return VirtualMic()

"""Every counter in stats counts what its name says, and each is made to move here (or,
for the microphone's, in test_live and test_faults; the subscription and handshake
ones in test_subscription_flood and test_security; `unprocessed_s` in test_stopping)."""

from __future__ import annotations

import json
import time

import numpy as np
import soundfile as sf

from procs import EXAMPLES, Lines, free_endpoint, serstream, spawn
from serstream.client import Subscriber
from serstream.decode import load_audio
from tiny_model import build_slow


def _messages(stdout: str) -> list[dict]:
    return [json.loads(x) for x in stdout.splitlines()]


def test_replay_counters_are_what_was_published(tiny):
    clips = sorted(EXAMPLES.glob("*.wav"))[:3]
    r = serstream("replay", "--model", tiny, "--no-publish", "--json", "--stats", "--speed", "0", *clips)
    assert r.returncode == 0, r.stderr
    messages = _messages(r.stdout)
    emotion = [m for m in messages if m["type"] == "emotion"]
    last = [m for m in messages if m["type"] == "stats"][-1]
    assert last["segments"] == sum(m["final"] for m in emotion) > 0
    assert last["partials"] == sum(not m["final"] for m in emotion) > 0
    assert last["events"] == len(emotion)
    assert last["errors"] == 0 and last["unprocessed_s"] == 0 and last["overflows"] == 0
    for clip in clips:  # frames and stream seconds are per source, at its (here the model's) rate
        stats = [m for m in messages if m["type"] == "stats" and m["source"] == str(clip)][-1]
        samples = load_audio(clip).samples.size
        assert stats["frames_captured"] == samples
        assert abs(stats["stream_s"] - samples / 16000) < 0.04


def test_a_replay_waits_for_room_and_never_counts_an_overflow(tmp_path):
    """A model far slower than the file: the ring stays full (buffered_s near its 4 s), the
    replay waits for room instead of dropping, and overflows stay 0 (they once counted
    the replay's own retries); every frame of the file is captured."""
    slow = build_slow(tmp_path / "slow.onnx", seconds=0.15)
    clip = EXAMPLES / "sad_savee_DC_sa01.wav"
    r = serstream("replay", "--model", slow, "--no-publish", "--json", "--stats", "--speed", "0",
                  "--partial-interval-ms", "100", "--stats-interval", "0.05", clip, timeout=600)
    assert r.returncode == 0, r.stderr
    stats = [m for m in _messages(r.stdout) if m["type"] == "stats"]
    assert max(m["buffered_s"] for m in stats) >= 3.0  # the ring was full: processing was behind
    assert all(m["overflows"] == 0 for m in stats)
    assert stats[-1]["frames_captured"] == load_audio(clip).samples.size


def test_non_finite_samples_are_counted(tiny, tmp_path):
    y = load_audio(EXAMPLES / "sad_savee_DC_sa01.wav").samples.copy()
    y[1000:1037] = np.nan
    y[5000:5003] = np.inf
    path = tmp_path / "broken.wav"
    sf.write(path, y, 16000, subtype="FLOAT")
    r = serstream("replay", "--model", tiny, "--no-publish", "--json", "--stats", "--speed", "0", path)
    assert r.returncode == 0, r.stderr
    assert [m for m in _messages(r.stdout) if m["type"] == "stats"][-1]["non_finite_samples"] == 40


def test_subscriptions_count_who_is_subscribed_now(tiny, tmp_path):
    ep = free_endpoint()
    clips = sorted(EXAMPLES.glob("*.wav"))
    proc = spawn("replay", "--model", tiny, "--bind", ep, "--speed", "1", "--json", "--stats",
                 "--stats-interval", "0.1", *clips)
    out = Lines(proc.stdout)

    read = 0  # lines already looked at: each wait is for a message printed after the last one found

    def next_stats(pred, timeout: float = 60) -> dict:
        nonlocal read
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while read < len(out.lines):
                m = json.loads(out.lines[read])
                read += 1
                if m["type"] == "stats" and pred(m):
                    return m
            time.sleep(0.05)
        raise AssertionError("no such stats message")

    try:
        assert next_stats(lambda m: True)["subscriptions"] == 0
        with Subscriber(ep, topics=("emotion", "stats")):
            next_stats(lambda m: m["subscriptions"] == 2)
        next_stats(lambda m: m["subscriptions"] == 0)  # gone with the connection
    finally:
        proc.terminate()
        proc.wait(timeout=30)

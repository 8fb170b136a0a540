"""The README shows real runs: its sample outputs (replay's lines, an event, batch
summary rows) are what the commands it names print now (``python3 tests/readme_samples.py``
rewrites them), and its Python snippet runs against a real daemon and returns."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from procs import EXAMPLES, ROOT, free_endpoint, serstream, track
from readme_samples import (
    EVENT_COMMAND,
    README,
    VOLATILE,
    chosen_rows,
    final_event,
    masked_lines,
    render_event,
    replay_lines,
    shown_event,
    shown_replay_lines,
    shown_summary_rows,
    summary_rows,
)


def test_readme_replay_sample_is_what_replay_prints():
    """The same lines, but for the clock and the milliseconds."""
    assert masked_lines(shown_replay_lines(README.read_text())) == masked_lines(replay_lines())


def test_readme_event_sample_is_what_replay_prints():
    """The sample event is the final event of the command the README names, as that
    command prints it now: same keys in the same order, same values but for the
    session, the clock and the milliseconds (probabilities to float noise)."""
    readme = README.read_text()
    assert EVENT_COMMAND in readme
    shown, real = shown_event(readme), final_event()
    assert list(shown) == list(real)
    for key, value in real.items():
        if key in VOLATILE:
            continue
        if key == "probabilities":
            assert list(shown[key]) == list(value)
            assert all(math.isclose(shown[key][k], v, abs_tol=1e-3) for k, v in value.items()), (shown[key], value)
        elif isinstance(value, float):
            assert math.isclose(shown[key], value, abs_tol=1e-3), (key, shown[key], value)
        else:
            assert shown[key] == value, key
    # laid out as the generator lays it out, so regenerating changes only values
    block = readme.split("```json\n", 1)[1].split("```", 1)[0]
    assert block.rstrip("\n") == render_event(shown)


def _close(a: str, b: str) -> bool:
    """Equal, or the same number to float noise."""
    try:
        return math.isclose(float(a), float(b), abs_tol=1e-3)
    except ValueError:
        return a == b


def test_readme_summary_sample_is_what_replay_writes():
    """The batch summary rows the README shows are those the command it names writes now."""
    shown = shown_summary_rows(README.read_text())
    real = chosen_rows(summary_rows(), shown)
    assert len(shown) > 2 and len(real) == len(shown), (shown, real)
    for s, r in zip(shown, real, strict=True):
        s_fields, r_fields = s.split(","), r.split(",")
        assert len(s_fields) == len(r_fields) and all(map(_close, s_fields, r_fields)), (s, r)


def test_readme_python_snippet_returns(tiny):
    """The snippet, pointed at a replaying daemon: it prints each final event, then its
    loop ends on its own (no event for ``timeout`` seconds) and its last line runs."""
    readme = README.read_text()
    snippet = readme.split("```python\n", 1)[1].split("```", 1)[0]
    ep = free_endpoint()
    assert '"tcp://127.0.0.1:5556"' in snippet and "timeout=30" in snippet, snippet
    # its own endpoint and a shorter wait, nothing else changed
    code = snippet.replace('"tcp://127.0.0.1:5556"', repr(ep)).replace("timeout=30", "timeout=5")
    clips = sorted(EXAMPLES.glob("*.wav"))[:2]
    client = track(subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    r = serstream("replay", "--model", tiny, "--bind", ep, "--speed", "0", "--quiet",
                  "--wait-subscriber", "60", *clips, timeout=120)
    assert r.returncode == 0, r.stderr
    try:
        out, err = client.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the README's Python snippet did not return")
    assert client.returncode == 0, err
    lines = out.splitlines()
    assert lines[-1] == "lost 0 messages", out
    assert len(lines) - 1 == len(clips)  # one final event per clip, label and confidence
    assert all(re.fullmatch(r"\w+ [01]\.\d+(e-\d+)?", ln) for ln in lines[:-1]), out

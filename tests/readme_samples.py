"""The README's sample outputs (replay's lines, an event, batch summary rows), made by
running the commands it shows.

``python3 tests/readme_samples.py`` rewrites them in README.md from a real run with the
shipped model (after a retrain, say); ``tests/test_readme.py`` checks that what the
README shows is what those commands print now, but for what changes from run to run
(the clock, sessions, milliseconds).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import ROOT, free_endpoint, serstream  # noqa: E402

README = ROOT / "README.md"
REPLAY_CLIP = "examples/sad_savee_DC_sa01.wav"
REPLAY_COMMAND = f"$ serstream replay --speed 0 {REPLAY_CLIP}\n"
EVENT_CLIP = "examples/angry_cremad_1001_DFA_ANG_XX.wav"
EVENT_COMMAND = f"`serstream replay --speed 1 --json {EVENT_CLIP}`"
SUMMARY_COMMAND = "--summary files.csv examples/*.wav\nexamples/README.md` wrote"
SUMMARY_INPUTS = ("examples/*.wav", "examples/README.md")
# what differs between two runs of the same command on the same audio
VOLATILE = ("session", "wall_start", "wall_end", "published_at", "processing_ms", "features_ms", "inference_ms")
WIDTH = 96


def replay_lines() -> list[str]:
    """What ``serstream replay --speed 0 examples/sad_savee_DC_sa01.wav`` prints
    (without a socket, which changes nothing on stdout)."""
    r = serstream("replay", "--speed", "0", "--no-publish", REPLAY_CLIP, timeout=180)
    if r.returncode != 0:
        raise RuntimeError(f"replay failed: {r.stderr.strip()}")
    return r.stdout.splitlines()


def final_event() -> dict[str, Any]:
    """The final event ``serstream replay --speed 1 --json`` prints for the angry clip
    (published on a free port rather than the default one, which may be taken)."""
    r = serstream("replay", "--speed", "1", "--json", "--bind", free_endpoint(), EVENT_CLIP, timeout=180)
    if r.returncode != 0:
        raise RuntimeError(f"replay failed: {r.stderr.strip()}")
    finals = [e for e in map(json.loads, r.stdout.splitlines()) if e["final"]]
    if len(finals) != 1:
        raise RuntimeError(f"expected one final event for {EVENT_CLIP}, got {len(finals)}")
    return finals[0]


def summary_rows() -> list[str]:
    """The file ``replay --speed 0 --no-publish --quiet --jobs 2 --summary files.csv
    examples/*.wav examples/README.md`` writes (README.md is there to show a failed row)."""
    files = [str(p.relative_to(ROOT)) for p in sorted(ROOT.glob(SUMMARY_INPUTS[0]))] + [SUMMARY_INPUTS[1]]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "files.csv"
        r = serstream("replay", "--speed", "0", "--no-publish", "--quiet", "--jobs", "2", "--summary", out,
                      *files, timeout=300)
        if r.returncode not in (0, 1) or not out.exists():  # 1: README.md is not audio, as intended
            raise RuntimeError(f"replay --summary failed: {r.stderr.strip()}")
        return out.read_text().splitlines()


def masked_lines(lines: list[str]) -> list[str]:
    return [re.sub(r"\d+\.\d ms$", "ms", re.sub(r"^\d\d:\d\d:\d\d", "hh:mm:ss", ln)) for ln in lines]


def render_event(event: dict[str, Any], width: int = WIDTH) -> str:
    """The event as JSON wrapped for reading: as many keys a line as fit in ``width``,
    a nested object continued under its first key."""
    lines: list[str] = []
    line = "{"
    items = list(event.items())
    for i, (key, value) in enumerate(items):
        end = "}" if i == len(items) - 1 else ","
        head = f"{json.dumps(key)}: "
        whole = head + json.dumps(value, separators=(", ", ": ")) + end
        if len(line) + len(whole) + 1 <= width:
            line += ("" if line == "{" else " ") + whole
            continue
        lines.append(line)
        line = " " + whole
        if len(line) > width and isinstance(value, dict):  # continued under its first key
            inner = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()]
            line = " " + head + "{"
            indent = " " * len(line)
            for j, piece in enumerate(inner):
                piece += "}" + end if j == len(inner) - 1 else ","
                if len(line) + len(piece) + 1 > width and not line.endswith("{"):
                    lines.append(line)
                    line = indent + piece
                else:
                    line += ("" if line.endswith("{") else " ") + piece
            lines.append(line)
            line = ""
    if line:
        lines.append(line)
    return "\n".join(lines)


def shown_replay_lines(readme: str) -> list[str]:
    return readme.split(REPLAY_COMMAND, 1)[1].split("```", 1)[0].splitlines()


def shown_event(readme: str) -> dict[str, Any]:
    return json.loads(readme.split("```json\n", 1)[1].split("```", 1)[0])


def _summary_block(readme: str) -> tuple[str, str, str]:
    """(text before the summary sample's rows, the rows, text after them)."""
    head, rest = readme.split(SUMMARY_COMMAND, 1)
    between, rest = rest.split("```text\n", 1)
    rows, after = rest.split("```", 1)
    return head + SUMMARY_COMMAND + between + "```text\n", rows, "```" + after


def shown_summary_rows(readme: str) -> list[str]:
    return _summary_block(readme)[1].splitlines()


def chosen_rows(rows: list[str], shown: list[str]) -> list[str]:
    """The header and the rows of the files the README shows (it shows a few of them)."""
    files = {row.split(",", 1)[0] for row in shown[1:]}
    return rows[:1] + [row for row in rows[1:] if row.split(",", 1)[0] in files]


def update(readme: str, lines: list[str], event: dict[str, Any], summary: list[str]) -> str:
    """``readme`` with its replay sample, its sample event and its summary rows replaced."""
    before, rest = readme.split(REPLAY_COMMAND, 1)
    _, after = rest.split("```", 1)
    readme = before + REPLAY_COMMAND + "\n".join(lines) + "\n```" + after
    before, rest = readme.split("```json\n", 1)
    _, after = rest.split("```", 1)
    readme = before + "```json\n" + render_event(event) + "\n```" + after
    before, shown, after = _summary_block(readme)
    return before + "\n".join(chosen_rows(summary, shown.splitlines())) + "\n" + after


if __name__ == "__main__":
    text = README.read_text()
    new = update(text, replay_lines(), final_event(), summary_rows())
    README.write_text(new)
    print("README.md samples", "rewritten from a real run" if new != text else "unchanged")

"""The model that ships in models/ (inside the package as serstream/models/): the daemon's default, self-describing, and its
model card's numbers reproducible from the split written beside it."""

from __future__ import annotations

import json
import re

from procs import EXAMPLES, ROOT, serstream
from serstream.features import FeatureConfig
from serstream.model import EmotionModel, default_model_path
from train.corpora import LABELS
from train.evaluate import evaluate_model

MODELS = ROOT / "models"


def test_default_model_is_the_shipped_trained_model():
    path = default_model_path()
    # found inside the package, which in a checkout links to the models/ training writes
    assert path.parent == ROOT / "serstream" / "models"
    assert path.samefile(MODELS / "serstream-emotion.onnx")
    assert path.stat().st_size < 5_000_000
    model = EmotionModel(path)
    card = json.loads((MODELS / "serstream-emotion.json").read_text())
    assert model.model_id == card["model_id"]
    assert model.labels == LABELS == tuple(card["labels"])
    assert model.meta.features == FeatureConfig(**card["features"])
    assert model.meta.vad is not None and model.meta.vad.to_dict() == card["vad"]
    assert "trained_on" in model.meta.provenance


def test_readme_main_command_runs_on_the_examples():
    r = serstream("replay", "--speed", "0", *sorted(EXAMPLES.glob("*.wav")), timeout=120)
    assert r.returncode == 0, r.stderr
    finals = [ln for ln in r.stdout.splitlines() if " final " in ln]
    assert len(finals) >= len(list(EXAMPLES.glob("*.wav")))
    assert all(any(lab in ln for lab in LABELS) for ln in finals)


def test_model_card_numbers_are_reproducible(tmp_path, data_dir):
    card = json.loads((MODELS / "serstream-emotion.json").read_text())
    result, clips = evaluate_model(MODELS / "serstream-emotion.onnx", data_dir, tmp_path / "cache",
                                   MODELS / "serstream-emotion.split.json", "test")
    assert len(clips) == card["data"]["parts"]["test"]["clips"]
    for corpus, r in card["test"]["corpora"].items():
        assert result["corpora"][corpus]["accuracy"] == r["accuracy"], corpus
        assert result["corpora"][corpus]["confusion"] == r["confusion"], corpus


def test_readme_sample_output_is_what_replay_prints():
    """The README shows a real run: the same lines, but for the clock and the milliseconds."""
    readme = (ROOT / "README.md").read_text()
    command = "$ serstream replay --speed 0 examples/sad_savee_DC_sa01.wav\n"
    shown = readme.split(command, 1)[1].split("```", 1)[0].splitlines()
    r = serstream("replay", "--speed", "0", "--no-publish", "examples/sad_savee_DC_sa01.wav")
    assert r.returncode == 0, r.stderr

    def masked(lines):
        return [re.sub(r"\d+\.\d ms$", "ms", re.sub(r"^\d\d:\d\d:\d\d", "hh:mm:ss", ln)) for ln in lines]

    assert masked(shown) == masked(r.stdout.splitlines())

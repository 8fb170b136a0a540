"""The per-speaker / per-corpus normalisation that ``python -m train cv --normalise`` measures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from train.__main__ import main
from train.corpora import Clip
from train.fit_whisper import subtract_group_means


def _clips() -> list[Clip]:
    out = []
    for corpus, speakers in (("ravdess", ("ravdess:01", "ravdess:02")), ("savee", ("savee:DC",))):
        for spk in speakers:
            out += [Clip(Path(f"/x/{spk}-{i}.wav"), "angry", corpus, spk, spk) for i in range(6)]
    return out


def _stats(clips: list[Clip]) -> torch.Tensor:
    """[clips, 2 versions, 1 layer, 4]: each speaker offset by its own voice, plus noise."""
    g = torch.Generator().manual_seed(0)
    voice = {s: torch.full((4,), float(k * 10)) for k, s in enumerate(sorted({c.speaker for c in clips}))}
    x = torch.randn(len(clips), 2, 1, 4, generator=g)
    return x + torch.stack([voice[c.speaker] for c in clips])[:, None, None, :]


def test_speaker_means_are_removed_and_versions_follow_the_clean_reference():
    clips = _clips()
    x = _stats(clips)
    out = subtract_group_means(x, clips, "speaker")
    for spk in {c.speaker for c in clips}:
        rows = [i for i, c in enumerate(clips) if c.speaker == spk]
        assert torch.allclose(out[rows, 0].mean(0), torch.zeros(1, 4), atol=1e-5)
        # augmented versions are moved by the same (clean) reference, not their own mean
        assert torch.allclose(out[rows, 1], x[rows, 1] - x[rows, 0].mean(0))
    assert torch.equal(subtract_group_means(x, clips, "none"), x)


def test_corpus_means_pool_the_speakers_of_a_corpus():
    clips = _clips()
    x = _stats(clips)
    out = subtract_group_means(x, clips, "corpus")
    rav = [i for i, c in enumerate(clips) if c.corpus == "ravdess"]
    assert torch.allclose(out[rav, 0].mean(0), torch.zeros(1, 4), atol=1e-5)
    # the two RAVDESS voices stay apart: a corpus mean does not remove the speaker
    assert (out[rav[:6], 0].mean() - out[rav[6:], 0].mean()).abs() > 5


def test_a_reference_of_k_clips_uses_k_of_the_speakers_clips():
    clips = _clips()
    x = _stats(clips)
    out = subtract_group_means(x, clips, "speaker", reference=2, seed=3)
    rows = [i for i, c in enumerate(clips) if c.speaker == "ravdess:01"]
    offset = (x[rows, 0] - out[rows, 0])[0]  # the mean that was subtracted
    pairs = [(a, b) for a in rows for b in rows if a < b]
    assert any(torch.allclose(offset, x[[a, b], 0].mean(0)) for a, b in pairs)
    assert not torch.allclose(offset, x[rows, 0].mean(0))


@pytest.mark.parametrize("how, reference", [("voice", 0), ("speaker", -1)])
def test_bad_normalisation_is_refused(how, reference):
    with pytest.raises(ValueError):
        subtract_group_means(_stats(_clips()), _clips(), how, reference)


def test_cli_refuses_a_reference_without_normalisation(tmp_path, capsys):
    assert main(["cv", "--data", str(tmp_path), "--reference", "5"]) == 2
    assert "--reference" in capsys.readouterr().err


def test_a_neutral_reference_uses_the_speakers_neutral_clips_only():
    clips = _clips()
    clips[0] = Clip(clips[0].path, "neutral", clips[0].corpus, clips[0].speaker, clips[0].group)
    clips[1] = Clip(clips[1].path, "neutral", clips[1].corpus, clips[1].speaker, clips[1].group)
    x = _stats(clips)
    out = subtract_group_means(x, clips, "speaker", reference="neutral")
    assert torch.allclose(out[2:6], x[2:6] - x[[0, 1], 0].mean(0))
    # a neutral clip is judged against the speaker's other neutral clips, never itself
    assert torch.allclose(out[0], x[0] - x[1, 0]) and torch.allclose(out[1], x[1] - x[0, 0])
    # a speaker with no neutral clip falls back to all of its clips
    assert torch.allclose(out[6:12, 0].mean(0), torch.zeros(1, 4), atol=1e-5)


def test_cli_refuses_a_reference_that_is_neither_a_count_nor_neutral(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cv", "--data", str(tmp_path), "--normalise", "speaker", "--reference", "calm"])
    assert exc.value.code == 2
    assert "a clip count, 'neutral' or 'heard'" in capsys.readouterr().err


def test_the_default_voice_counts_each_speaker_once_by_their_neutral_clips():
    from train.fit_whisper import default_voice
    from train.voices import group_voices

    clips = _clips()
    clips[0] = Clip(clips[0].path, "neutral", clips[0].corpus, clips[0].speaker, clips[0].group)
    clips[1] = Clip(clips[1].path, "neutral", clips[1].corpus, clips[1].speaker, clips[1].group)
    x = _stats(clips)[:, 0]
    voices = group_voices(x.numpy(), clips)
    assert sorted(voices) == ["ravdess:01", "ravdess:02", "savee:DC"]
    assert torch.allclose(torch.from_numpy(voices["ravdess:01"]), x[[0, 1]].mean(0))  # its neutral clips
    assert torch.allclose(torch.from_numpy(voices["savee:DC"]), x[12:].mean(0))  # none: all of its clips
    # three speakers, each counted once, however many clips each has
    assert torch.allclose(default_voice(x, clips), torch.stack([torch.from_numpy(v) for v in voices.values()]).mean(0))
    assert torch.allclose(default_voice(x[6:], clips[6:]), (x[6:12].mean(0) + x[12:].mean(0)) / 2, atol=1e-5)


def _voiced_corpus(speakers: int = 8, per_label: int = 6, seed: int = 0) -> tuple[list[Clip], torch.Tensor]:
    """Statistics in which a speaker's voice outweighs the emotion: each label moves
    the statistics one way, each voice moves them further, a different way for everyone."""
    g = torch.Generator().manual_seed(seed)
    labels = ("neutral", "happy", "sad", "angry")
    emotion = {lab: torch.randn(8, generator=g) for lab in labels}
    clips, rows = [], []
    for s in range(speakers):
        spk = f"ravdess:{s:02d}"
        voice = torch.randn(8, generator=g) * 3
        for lab in labels:
            for i in range(per_label):
                clips.append(Clip(Path(f"/x/{spk}-{lab}-{i}.wav"), lab, "ravdess", spk, spk))
                rows.append(voice + emotion[lab] + torch.randn(8, generator=g) * 0.3)
    return clips, torch.stack(rows)[:, None, None, :]


def test_cross_validation_with_a_voice_heard_rather_than_enrolled():
    """``--reference heard``: the global head picks what sounds neutral, and the voice
    head judges against the mean of it. On voices that outweigh the emotion, both ways
    of knowing the voice beat not knowing it."""
    from train.fit_whisper import WhisperConfig, _cross_validate_heard, speaker_folds

    clips, x = _voiced_corpus()
    config = WhisperConfig(layers=(3,), epochs=30, hidden=16, heads=1, batch_size=16, dropout=0.0)
    result = _cross_validate_heard(clips, x, speaker_folds(clips, 4, config.seed), config)
    assert result["folds"] == 4 and result["reference"] == "heard"
    assert 0 < result["of_them_truly_neutral"] <= result["heard_neutral_clips"] <= len(clips)
    glob, heard, enrolled, both = (result[k]["ravdess"] for k in ("global", "final", "enrolled", "enrolled_and_global"))
    assert enrolled > glob + 0.2 and heard > glob + 0.1, result
    assert 0 <= both <= 1


def test_a_heard_reference_is_for_speakers_and_cross_validation_only():
    with pytest.raises(ValueError, match="--normalise speaker"):
        subtract_group_means(_stats(_clips()), _clips(), "corpus", "heard")
    with pytest.raises(ValueError, match="only cross-validation"):
        subtract_group_means(_stats(_clips()), _clips(), "speaker", "heard")

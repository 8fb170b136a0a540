"""Enrolling a voice (`serstream enrol`) and judging speech against it (`--voice`).

The model here is ``tiny_model.build_voiced``: its statistics are the mean normalised
feature frame of a segment and its voice head reads that mean less the voice, so what
an enrolment must have written can be checked from the events alone: a voice enrolled
on two one-segment clips A and B is (s_A + s_B) / 2, the voice head then sees
(s_A - s_B) / 2 on A and the opposite on B, and its logits on the two are opposite.
"""

from __future__ import annotations

import json
import time

import jsonschema
import numpy as np
import pytest
import soundfile as sf

from procs import EXAMPLES, ROOT, assert_one_line_error, serstream, spawn
from serstream.model import EmotionModel
from serstream.voice import FORMAT, Enrolment, Voice, VoiceError
from tiny_model import build_voiced, metadata

SCHEMA = json.loads((ROOT / "serstream" / "schema" / "event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
# each a single segment with these VAD settings (checked in the test that relies on it)
A = EXAMPLES / "neutral_ravdess_03-01-01-01-01-01-01.wav"
B = EXAMPLES / "sad_savee_DC_sa01.wav"
ONE_SEGMENT = ("--partial-interval-ms", "0", "--hangover-ms", "1000")


@pytest.fixture(scope="module")
def voiced(tmp_path_factory):
    return build_voiced(tmp_path_factory.mktemp("voiced") / "voiced.onnx")


def _finals(stdout: str) -> list[dict]:
    messages = [json.loads(line) for line in stdout.splitlines()]
    for m in messages:
        errors = [e.message for e in VALIDATOR.iter_errors(m)]
        assert not errors, errors
    return [m for m in messages if m["type"] == "emotion" and m["final"]]


def _replay(model, *args) -> list[dict]:
    r = serstream("replay", "--model", model, "--no-publish", "--json", "--speed", "0", *ONE_SEGMENT, *args)
    assert r.returncode == 0, r.stderr
    return _finals(r.stdout)


def _centred_logits(event: dict) -> np.ndarray:
    p = np.array(list(event["probabilities"].values()))
    z = np.log(p)
    return z - z.mean()


def test_an_enrolled_voice_is_the_mean_of_its_segments_and_events_name_it(voiced, tmp_path):
    out = tmp_path / "alice.json"
    r = serstream("enrol", "--model", voiced, "--out", out, *ONE_SEGMENT, A, B)
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["format"] == FORMAT and doc["model"] == "tiny-voiced" and doc["name"] == "alice"
    assert doc["segments"] == 2 and doc["sources"] == [str(A), str(B)]
    assert doc["shape"] == [1, 1, metadata().features.n_features]
    assert doc["speech_s"] > 1.0

    plain = _replay(voiced, A, B)
    assert [e["voice"] for e in plain] == [None, None]
    a, b = _replay(voiced, "--voice", out, A, B)
    assert (a["voice"], b["voice"]) == ("alice", "alice")
    assert (a["segment"], b["segment"]) == (0, 0)  # one segment each: the premise of what follows
    # the voice head on A sees (s_A - s_B) / 2 and on B the opposite: opposite logits
    np.testing.assert_allclose(_centred_logits(a), -_centred_logits(b), atol=2e-3)
    assert np.abs(_centred_logits(a)).max() > 0.05  # and not both flat, which would prove nothing
    assert a["probabilities"] != plain[0]["probabilities"]
    # and the human-readable lines say which voice judged the speech
    r = serstream("replay", "--model", voiced, "--no-publish", "--speed", "0", *ONE_SEGMENT, "--voice", out, A)
    assert r.returncode == 0 and " final " in r.stdout and r.stdout.rstrip().endswith("voice alice"), r.stdout


def test_a_clip_judged_against_its_own_voice_is_undecided(voiced, tmp_path):
    """The voice is fed to the graph as written: enrolled on A alone, A less its own
    voice is zero, and the voice head answers every label alike."""
    out = tmp_path / "a.json"
    assert serstream("enrol", "--model", voiced, "--out", out, *ONE_SEGMENT, A).returncode == 0
    (a,) = _replay(voiced, "--voice", out, A)
    assert a["voice"] == "a"
    np.testing.assert_allclose(list(a["probabilities"].values()), 0.25, atol=1e-4)


def test_replay_in_worker_processes_uses_the_voice_too(voiced, tmp_path):
    out = tmp_path / "v.json"
    assert serstream("enrol", "--model", voiced, "--out", out, "--name", "bob", *ONE_SEGMENT, A, B).returncode == 0
    one = _replay(voiced, "--voice", out, A, B, *EXAMPLES.glob("*cremad*.wav"))
    two = _replay(voiced, "--voice", out, "--jobs", "2", A, B, *EXAMPLES.glob("*cremad*.wav"))
    assert [(e["voice"], e["probabilities"]) for e in one] == [(e["voice"], e["probabilities"]) for e in two]
    assert {e["voice"] for e in one} == {"bob"}


def test_a_voice_file_reads_back_exactly_and_damage_is_named(tmp_path):
    stats = np.random.default_rng(1).standard_normal((1, 2, 3)).astype(np.float32)
    voice = Voice("carol", "m-1", stats, segments=4, speech_s=9.5, sources=("x.wav",))
    path = voice.save(tmp_path / "carol.json")
    back = Voice.load(path)
    assert np.array_equal(back.statistics, stats) and back.statistics.dtype == np.float32
    assert (back.name, back.model, back.segments, back.speech_s, back.sources) == ("carol", "m-1", 4, 9.5, ("x.wav",))
    assert [p.name for p in tmp_path.iterdir()] == ["carol.json"]  # no temporary left behind

    doc = json.loads(path.read_text())
    cases = {
        "not JSON": ("{", "not JSON"),
        "another format": (json.dumps({**doc, "format": "x"}), "not a voice file"),
        "a newer version": (json.dumps({**doc, "version": 99}), "version 99"),
        "no statistics": (json.dumps({k: v for k, v in doc.items() if k != "statistics"}), "no 'statistics'"),
        "wrong length": (json.dumps({**doc, "shape": [1, 2, 4]}), "damaged"),
        "NaN": (path.read_text().replace(str(doc["statistics"][0]), "NaN", 1), "not all finite"),
    }
    for what, (text, needle) in cases.items():
        bad = tmp_path / f"{what}.json"
        bad.write_text(text)
        with pytest.raises(VoiceError, match=needle):
            Voice.load(bad)
    with pytest.raises(VoiceError, match="not found"):
        Voice.load(tmp_path / "absent.json")
    with pytest.raises(VoiceError, match="cannot write"):
        voice.save(tmp_path / "no-such-folder" / "v.json")


def test_a_voice_is_refused_by_any_other_model(voiced, tiny, tmp_path):
    out = tmp_path / "v.json"
    assert serstream("enrol", "--model", voiced, "--out", out, *ONE_SEGMENT, A).returncode == 0
    other = build_voiced(tmp_path / "other.onnx", metadata(model_id="other-voiced"), seed=3)
    r = serstream("replay", "--model", other, "--no-publish", "--voice", out, A)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "enrolled with model tiny-voiced, not other-voiced")
    r = serstream("replay", "--model", tiny, "--no-publish", "--voice", out, A)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "does not adapt to a voice")
    r = serstream("replay", "--model", voiced, "--no-publish", "--voice", tmp_path / "absent.json", A)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "voice file not found")
    # checked in the model too, for callers of the library
    model = EmotionModel(other)
    with pytest.raises(VoiceError, match="enrolled with model"):
        Voice.load(out).check(model)


def test_enrol_refuses_a_model_that_does_not_adapt(tiny, tmp_path):
    r = serstream("enrol", "--model", tiny, "--out", tmp_path / "v.json", A)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "does not adapt to a voice")
    assert not (tmp_path / "v.json").exists()


def test_enrol_writes_nothing_without_speech_or_with_a_bad_file(voiced, tmp_path):
    out = tmp_path / "v.json"
    out.write_text("the voice that was here\n")
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(32000, np.float32), 16000)
    r = serstream("enrol", "--model", voiced, "--out", out, silence)
    assert r.returncode == 1
    assert_one_line_error(r.stderr, "no speech was found")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    r = serstream("enrol", "--model", voiced, "--out", out, A, broken)
    assert r.returncode == 1
    assert_one_line_error(r.stderr, "1 of 2 files could not be read", "nothing written")
    assert out.read_text() == "the voice that was here\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.wav", "silence.wav", "v.json"]
    r = serstream("enrol", "--model", voiced, "--out", tmp_path / "nowhere" / "v.json", A)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "no such folder")
    r = serstream("enrol", "--model", voiced, "--out", out, "--speech-seconds", "0", A)
    assert r.returncode == 2
    assert_one_line_error(r.stderr, "--speech-seconds must be in")


def test_enrol_from_the_microphone_ends_when_it_has_heard_enough(virtual_mic, voiced, tmp_path):
    out = tmp_path / "live.json"
    proc = spawn("enrol", "--model", voiced, "--out", out, "--speech-seconds", "2", *ONE_SEGMENT)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:  # talk until it has heard enough
        player = virtual_mic.play(B)
        while player.poll() is None and proc.poll() is None:
            time.sleep(0.05)
        player.kill()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    doc = json.loads(out.read_text())
    assert doc["speech_s"] >= 2 and doc["segments"] >= 1
    assert doc["sources"][0].startswith("mic:") and doc["model"] == "tiny-voiced"
    assert "Traceback" not in err


def test_an_enrolment_refuses_statistics_that_are_not_numbers(voiced):
    """A model answering NaN statistics (finite probabilities beside them) yields no
    voice, said in one line, rather than a file no model would accept."""
    from serstream.model import Classification
    from serstream.vad import Segment

    model = EmotionModel(voiced)
    enrolment = Enrolment(model)
    stats = np.full(model.voice_shape, np.nan, np.float32)
    result = Classification(model.labels, np.full(4, 0.25), 1.0, 1.0, 100, statistics=stats)
    enrolment(Segment(index=0, start=0, end=16000, audio=np.zeros(16000, np.float32), final=True,
                      detected_at=16000, speech_end=16000), result, 16000)
    assert enrolment.segments == 1
    with pytest.raises(VoiceError, match="not finite"):
        enrolment.voice("x")

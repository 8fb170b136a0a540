"""Corpus parsers: the examples and quirks of ../shared/datasets.md, and unknown names."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.corpora import (
    CORPUS_LABELS,
    LABELS,
    UnknownName,
    clip_from_path,
    corpus_of,
    parse_cremad,
    parse_ravdess,
    parse_savee,
    parse_tess,
    scan,
)


def test_ravdess_example_from_datasets_md():
    assert parse_ravdess("02-01-06-01-02-01-12") == ("fear", "ravdess:12", "female")
    assert parse_ravdess("03-01-08-02-01-02-01") == ("surprise", "ravdess:01", "male")
    assert parse_ravdess("03-01-02-01-01-01-24")[0] == "calm"


def test_cremad_including_one_letter_level():
    assert parse_cremad("1001_DFA_ANG_XX") == ("angry", "cremad:1001")
    assert parse_cremad("1040_ITH_SAD_X") == ("sad", "cremad:1040")
    assert parse_cremad("1091_IEO_HAP_HI")[0] == "happy"


def test_tess_quirks():
    assert parse_tess("OAF_back_fear") == ("fear", "tess:OAF", "back")
    assert parse_tess("OA_bite_neutral") == ("neutral", "tess:OAF", "bite")  # OA_ typo
    assert parse_tess("YAF_youth_ps") == ("surprise", "tess:YAF", "youth")
    # the folder name does not matter, only the file name
    c = clip_from_path(Path("tess/YAF_pleasant_surprised/YAF_dog_ps.ogg"), "tess")
    assert c.label == "surprise" and c.group == "tess-word:dog"


def test_savee_prefixes():
    assert parse_savee("DC_a01") == ("angry", "savee:DC")
    assert parse_savee("JE_sa12") == ("sad", "savee:JE")
    assert parse_savee("KL_su03") == ("surprise", "savee:KL")
    assert parse_savee("JK_n30") == ("neutral", "savee:JK")


@pytest.mark.parametrize("fn, name", [
    (parse_ravdess, "03-01-09-01-01-01-01"),  # no emotion 09
    (parse_ravdess, "03-01-01-01-01-01-25"),  # no actor 25
    (parse_ravdess, "notes"),
    (parse_cremad, "1001_DFA_XYZ_XX"),
    (parse_tess, "OAF_back_bored"),
    (parse_tess, "ZZZ_back_fear"),
    (parse_savee, "DC_x01"),
    (parse_savee, "DC_a1"),
])
def test_unknown_names_are_refused(fn, name):
    with pytest.raises(UnknownName):
        fn(name)


def test_corpus_folders_any_spelling():
    assert corpus_of("ravdess") == "ravdess" and corpus_of("Crema") == "cremad"
    assert corpus_of("TESS Toronto emotional speech set data") == "tess" and corpus_of("Savee") == "savee"
    assert corpus_of("other") is None


def test_scan_reports_and_skips_unknown(tmp_path):
    (tmp_path / "Savee").mkdir()
    (tmp_path / "Savee" / "DC_a01.wav").write_bytes(b"")
    (tmp_path / "Savee" / "DC_zz01.wav").write_bytes(b"")
    (tmp_path / "Savee" / "readme.txt").write_text("x")
    (tmp_path / "Ravdess" / "Actor_12").mkdir(parents=True)
    (tmp_path / "Ravdess" / "Actor_12" / "02-01-06-01-02-01-12.wav").write_bytes(b"")
    s = scan(tmp_path)
    assert sorted(c.label for c in s.clips) == ["angry", "fear"]
    assert [p.name for p in s.unknown] == ["DC_zz01.wav"]


def test_real_corpora_parse_completely(data_dir):
    s = scan(data_dir)
    assert not s.unknown
    counts = s.counts()
    assert set(counts) == {"ravdess", "cremad", "tess", "savee"}
    for corpus, labels in counts.items():
        assert set(labels) == set(CORPUS_LABELS[corpus]), corpus
    assert set().union(*[set(v) for v in counts.values()]) == set(LABELS)

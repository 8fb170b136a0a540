"""Training caches key a clip by its bytes: a fresh copy of the corpora (new folder, new
times) finds what was computed, and a changed file does not."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import replace

import numpy as np

from serstream.vad import VadConfig
from train.corpora import scan
from train.dataset import AudioCache, content_id


def _copy(src, dest_dir):
    dest = dest_dir / src.name
    shutil.copyfile(src, dest)
    os.utime(dest, (1_000_000_000, 1_000_000_000))  # another time, as a fresh copy has
    return dest


def test_content_id_follows_the_bytes_not_the_path_or_time(tmp_path, data_dir):
    src = next(c.path for c in scan(data_dir).clips)
    copy = _copy(src, tmp_path)
    assert content_id(copy) == content_id(src)
    changed = tmp_path / ("changed" + src.suffix)
    data = bytearray(src.read_bytes())
    data[-1] ^= 1
    changed.write_bytes(bytes(data))
    assert content_id(changed) != content_id(src)


def test_a_copied_corpus_is_found_in_the_cache(tmp_path, data_dir, caplog):
    clips = scan(data_dir).clips[:3]
    cache = AudioCache(tmp_path / "cache", VadConfig(), 16000, workers=1)
    _, first = cache.trimmed(clips)
    copies = tmp_path / "copy"
    copies.mkdir()
    moved = [replace(c, path=_copy(c.path, copies)) for c in clips]
    with caplog.at_level(logging.INFO, logger="train.dataset"):
        _, again = cache.trimmed(moved)
    assert "extract: all 3 clips from cache" in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))

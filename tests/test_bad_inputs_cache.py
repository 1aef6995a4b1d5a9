"""Bad states of the decoded-image cache: a folder that cannot be written is named with the
way to choose another, a damaged entry is rebuilt (saying why), an interrupted build leaves
nothing half-written behind."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from emotion_lightning.data.cache import CacheFolderError, cached_arrays
from emotion_lightning.data.fer_files import load_fer
from tests.conftest import fer_images, write_fer_csv
from tests.helpers import make_read_only, undo_read_only


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"images": rng.integers(0, 256, (5, 8, 8), np.uint8), "labels": np.arange(5)}


def equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_read_only_cache_folder_is_named_with_how_to_choose_another(tmp_path):
    csv_file = write_fer_csv(tmp_path / "fer.csv", *fer_images(2), ["Training"] * 14)
    cache = make_read_only(tmp_path / "cache")
    try:
        with pytest.raises(CacheFolderError, match=rf"cannot write the decoded-image cache in "
                                                   rf"{cache} .*EMOTION_CACHE=.*paths\.cache_dir="):
            load_fer(csv_file, cache_dir=cache)
    finally:
        undo_read_only(cache)


def test_a_cache_path_that_is_a_file_is_named(tmp_path):
    taken = tmp_path / "cache"
    taken.write_text("not a folder")
    with pytest.raises(CacheFolderError, match=rf"decoded-image cache in {taken} "):
        cached_arrays(taken, "k", arrays)
    assert taken.read_text() == "not a folder"


@pytest.mark.parametrize("damage", ["truncated", "missing array", "bad meta", "foreign key"])
def test_a_damaged_entry_is_rebuilt_and_says_why(tmp_path, caplog, damage):
    cached_arrays(tmp_path, "k", arrays)
    built = arrays()
    entry = tmp_path / "k"
    if damage == "truncated":  # a copy cut off by a full disk or a crash
        data = (entry / "images.npy").read_bytes()
        (entry / "images.npy").write_bytes(data[: len(data) - 40])
    elif damage == "missing array":
        (entry / "labels.npy").unlink()
    elif damage == "bad meta":
        (entry / "meta.json").write_text("{")
    else:
        (entry / "meta.json").write_text(json.dumps({"key": "other", "arrays": ["images"]}))
    calls = []

    def build():
        calls.append(1)
        return arrays()

    with caplog.at_level(logging.WARNING, logger="emotion_lightning.data.cache"):
        again = cached_arrays(tmp_path, "k", build)
    assert calls == [1] and equal(again, built)
    assert f"cache entry {entry} is damaged" in caplog.text and "rebuilding it" in caplog.text
    caplog.clear()
    assert equal(cached_arrays(tmp_path, "k", build), built) and calls == [1]  # whole again
    assert not caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k"]  # nothing left aside


def test_an_interrupted_build_leaves_no_entry_and_the_next_run_builds(tmp_path):
    """Ctrl-C while the arrays are written: no half entry, no temporary folder left."""
    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_arrays(tmp_path, "k", interrupted)

    class Interrupting(dict):
        def items(self):
            yield "images", arrays()["images"]
            raise KeyboardInterrupt  # between two arrays

    with pytest.raises(KeyboardInterrupt):
        cached_arrays(tmp_path, "k", Interrupting)
    assert list(tmp_path.iterdir()) == []
    assert equal(cached_arrays(tmp_path, "k", arrays), arrays())

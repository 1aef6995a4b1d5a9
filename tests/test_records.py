"""JSON records are written whole or not at all: a failed write keeps the earlier file."""

from __future__ import annotations

import json
import os

import pytest

from emotion_lightning.records import write_json


def test_a_record_is_written_sorted_and_replaces_the_earlier_one(tmp_path):
    path = write_json({"b": 1, "a": [0.5]}, tmp_path / "run" / "metrics.json")
    assert path.read_text().splitlines()[1].strip() == '"a": ['  # sorted keys, indented
    write_json({"a": 2}, path)
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_a_failed_write_keeps_the_earlier_record_and_leaves_no_partial(tmp_path, monkeypatch):
    path = write_json({"test/acc": 0.8}, tmp_path / "metrics.json")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_json({"test/acc": 0.1}, path)
    assert json.loads(path.read_text()) == {"test/acc": 0.8}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]

"""FER2013 parsing: both release formats, split assignment, malformed input, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_lightning.data import fer_files
from emotion_lightning.data.fer_files import (
    FERFormatError,
    list_fer_folder,
    load_fer,
    read_fer_csv,
)
from tests.conftest import fer_images, write_fer_csv, write_fer_folder


def test_csv_round_trip(fer_csv):
    table = read_fer_csv(fer_csv)
    images, labels = fer_images(12)
    assert table.images.dtype == np.uint8 and table.images.shape == (84, 48, 48)
    np.testing.assert_array_equal(table.images, images)
    np.testing.assert_array_equal(table.labels, labels)
    assert set(table.usages) == {"Training", "PublicTest", "PrivateTest"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("3,1 2 3,Training", "3 pixel values, expected 2304"),
        ("x," + " ".join(["0"] * 2304) + ",Training", "emotion 'x' is not an integer"),
        ("9," + " ".join(["0"] * 2304) + ",Training", "emotion 9 is outside 0-6"),
        ("1," + " ".join(["0"] * 2303) + " abc,Training", "pixel value 'abc' is not an integer"),
        ("1," + " ".join(["300"] * 2304) + ",Training", "pixel values must lie in 0-255"),
        ("1," + " ".join(["0"] * 2304) + ",Holdout", "Usage 'Holdout'"),
    ],
)
def test_malformed_csv_names_file_and_line(tmp_path, row, message):
    good = "0," + " ".join(["7"] * 2304) + ",Training"
    path = tmp_path / "bad.csv"
    path.write_text(f"emotion,pixels,Usage\n{good}\n{row}\n")
    with pytest.raises(FERFormatError) as err:
        read_fer_csv(path)
    assert f"{path}:3" in str(err.value)
    assert message in str(err.value)


def test_csv_wrong_header(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("label,data\n0,1\n")
    with pytest.raises(FERFormatError, match=r"bad.csv:1: header"):
        read_fer_csv(path)


def test_folder_split_from_prefix_then_folder(tmp_path):
    images, labels = fer_images(2)
    write_fer_folder(tmp_path, images, labels, ["Training", "PrivateTest"] * 7)
    # a file without a usage prefix takes its split from the folder
    (tmp_path / "test" / "happy" / "plain.png").write_bytes(
        (tmp_path / "test" / "happy").glob("*.png").__next__().read_bytes()
    )
    entries = {p.name: (label, usage) for p, label, usage in list_fer_folder(tmp_path)}
    assert entries["plain.png"] == (3, "PublicTest")
    assert sum(u == "PrivateTest" for _, u in entries.values()) == 7
    assert sum(u == "Training" for _, u in entries.values()) == 7


def test_folder_and_csv_decode_identically(tmp_path):
    images, labels = fer_images(3)
    usages = ["Training"] * len(labels)
    from_csv = load_fer(write_fer_csv(tmp_path / "f.csv", images, labels, usages), None)
    from_folder = load_fer(write_fer_folder(tmp_path / "tree", images, labels, usages), None)
    order = np.lexsort((from_folder.images.reshape(21, -1).sum(1), from_folder.labels))
    ref = np.lexsort((from_csv.images.reshape(21, -1).sum(1), from_csv.labels))
    np.testing.assert_array_equal(from_folder.images[order], from_csv.images[ref])


def test_unknown_class_folder_is_named(tmp_path):
    (tmp_path / "train" / "bored").mkdir(parents=True)
    with pytest.raises(FERFormatError, match="bored"):
        list_fer_folder(tmp_path)


def test_missing_root_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"(?s)does not exist.*fer2013.csv.*data.root"):
        load_fer(tmp_path / "nowhere")


def test_unreadable_image_is_named(tmp_path):
    folder = tmp_path / "train" / "sad"
    folder.mkdir(parents=True)
    (folder / "Training_1.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FERFormatError, match="Training_1.jpg"):
        load_fer(tmp_path)


def test_cache_is_built_once_and_invalidated_by_changes(fer_folder, tmp_path, monkeypatch):
    calls = []
    real = fer_files.read_fer_folder
    monkeypatch.setattr(fer_files, "read_fer_folder", lambda *a: calls.append(1) or real(*a))
    first = load_fer(fer_folder, tmp_path / "cache")
    second = load_fer(fer_folder, tmp_path / "cache")
    assert len(calls) == 1
    assert isinstance(second.images, np.memmap)
    np.testing.assert_array_equal(first.images, second.images)
    victim = next((fer_folder / "train" / "angry").glob("*.png"))
    victim.write_bytes(next((fer_folder / "train" / "happy").glob("*.png")).read_bytes())
    load_fer(fer_folder, tmp_path / "cache")
    assert len(calls) == 2

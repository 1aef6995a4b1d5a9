"""WildDataModule: class folders, exclusions, duplicate-safe 70:30 splits, real wild data."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from emotion_lightning.data import WildDataModule
from tests.conftest import SHARED_DATA, requires_shared


@pytest.fixture
def crops(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "processed"
    for folder, count in (("angry", 10), ("happy", 30), ("Surprised", 10), ("fear", 5)):
        (root / folder).mkdir(parents=True)
        for i in range(count):
            cv2.imwrite(str(root / folder / f"{i}.png"), rng.integers(0, 256, (60, 60), np.uint8))
    # exact duplicates inside one class and across files
    for i in range(5):
        shutil.copy(root / "happy" / f"{i}.png", root / "happy" / f"dup{i}.png")
    return root


def test_wild_split_subset_and_aliases(crops):
    dm = WildDataModule(crops, classes=["happy", "surprise", "angry"], cache_dir=None, seed=1,
                        test_fraction=0.0)
    dm.setup()
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert len(train) + len(val) == 10 + 35 + 10
    assert abs(len(val) / 55 - 0.3) < 0.08
    assert set(np.unique(train.labels)) == {0, 1, 2}
    seen = {im.tobytes() for im in train.images}
    assert not any(im.tobytes() in seen for im in val.images)
    assert train.images.shape[1:] == (48, 48)
    np.testing.assert_array_equal(dm.datasets["test"].labels, val.labels)


def test_wild_default_split_holds_out_a_test_part(crops):
    """70/15/15 by default: stage 2 never selects and reports on the same images."""
    dm = WildDataModule(crops, classes=["happy", "surprise", "angry"], cache_dir=None, seed=1)
    dm.setup()
    parts = {s: dm.datasets[s] for s in ("train", "val", "test")}
    assert sum(len(d) for d in parts.values()) == 55
    assert len(parts["test"]) > 0 and len(parts["val"]) > 0
    keys = {s: {im.tobytes() for im in d.images} for s, d in parts.items()}
    assert not keys["test"] & keys["val"] and not keys["test"] & keys["train"]


def test_exclusion_list_is_honoured_and_files_kept(crops):
    (crops / "exclude.txt").write_text("# reviewed\nangry/0.png\nangry/1.png\n")
    dm = WildDataModule(crops, classes=["angry", "happy"], cache_dir=None)
    dm.setup()
    assert sum(dm.class_counts(s)[0] for s in ("train", "val", "test")) == 8
    assert (crops / "angry" / "0.png").exists()
    with pytest.raises(FileNotFoundError, match="exclude_file"):
        WildDataModule(crops, classes=["angry"], cache_dir=None,
                       exclude_file=crops / "nope.txt").setup()


def test_missing_root_and_unknown_class(tmp_path, crops):
    with pytest.raises(FileNotFoundError, match="emotion-faces build"):
        WildDataModule(tmp_path / "none", cache_dir=None).setup()
    with pytest.raises(ValueError, match="sad"):
        WildDataModule(crops, classes=["sad"], cache_dir=None).setup()


@requires_shared("wild")
def test_real_wild_data(tmp_path):
    dm = WildDataModule(SHARED_DATA / "wild", cache_dir=tmp_path)
    dm.setup()
    counts = np.sum([dm.class_counts(s) for s in ("train", "val", "test")], axis=0)
    assert counts.tolist()[0] >= 180 and counts.sum() > 4700  # angry 185; ~4.8k in total
    assert dm.class_counts("val")[2] > 5 * dm.class_counts("val")[0]  # happy dominates


@requires_shared("wild")
def test_detect_faces_on_raw_photos(tmp_path):
    raw = tmp_path / "raw"
    for label in ("happy", "sad"):
        (raw / label).mkdir(parents=True)
        for src in sorted((SHARED_DATA / "wild" / label).glob("*.jpg"))[:4]:
            shutil.copy(src, raw / label / src.name)
    dm = WildDataModule(raw, classes=["happy", "sad"], detect_faces=True, cache_dir=tmp_path / "c",
                        train_fraction=0.5)
    dm.setup()
    crops = next((tmp_path / "c").glob("faces-*"))
    assert (crops / "report.csv").is_file()
    kept = len(list(crops.rglob("*.png")))
    assert kept >= 4 and sum(len(dm.datasets[s]) for s in ("train", "val", "test")) == kept

"""WildDataModule: class folders, exclusions, duplicate-safe 70:30 splits, face detection
once per node (prepare_data), real wild data."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion_lightning.data import WildDataModule
from tests.conftest import REPO, SHARED_DATA, requires_shared, run_ddp
from tests.helpers import CountingFaceFinder, face_calls


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
        WildDataModule(crops, classes=["angry", "happy"], cache_dir=None,
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
    dm.prepare_data()
    dm.setup()
    crops = next((tmp_path / "c").glob("faces-*"))
    assert (crops / "report.csv").is_file()
    kept = len(list(crops.rglob("*.png")))
    assert kept >= 4 and sum(len(dm.datasets[s]) for s in ("train", "val", "test")) == kept


# -- detect_faces: detection in prepare_data (once per node), setup only reads -----------------
@pytest.fixture
def raw_photos(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "raw"
    for label in ("happy", "sad"):
        (root / label).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(root / label / f"{i}.png"), rng.integers(0, 256, (64, 64, 3), np.uint8))
    return root


@pytest.fixture
def counted_faces(tmp_path, monkeypatch) -> Path:
    calls = tmp_path / "face_calls.txt"
    monkeypatch.setenv("FACE_CALLS", str(calls))
    monkeypatch.setattr("emotion_lightning.faces.detector.FaceDetector", CountingFaceFinder)
    monkeypatch.setattr("emotion_lightning.data.wild.FaceDetector", CountingFaceFinder)
    return calls


def test_setup_without_prepare_data_says_what_to_run(tmp_path, raw_photos, counted_faces):
    dm = WildDataModule(raw_photos, classes=["happy", "sad"], detect_faces=True,
                        cache_dir=tmp_path / "c")
    what_to_run = r"16 photo.*call prepare_data\(\).*emotion-faces build"
    with pytest.raises(FileNotFoundError, match=what_to_run):
        dm.setup()
    assert face_calls(counted_faces) == []


def test_prepare_data_detects_once_and_setup_only_reads(tmp_path, raw_photos, counted_faces):
    dm = WildDataModule(raw_photos, classes=["happy", "sad"], detect_faces=True,
                        cache_dir=tmp_path / "c", train_fraction=0.5, test_fraction=0.0)
    dm.prepare_data()
    assert sum(n for _, n in face_calls(counted_faces)) == 16
    dm.setup()
    dm.prepare_data()  # resumable: nothing new to detect
    assert sum(n for _, n in face_calls(counted_faces)) == 16
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == 16


TRAIN_WITH_COUNTED_FACES = """
import sys

sys.path.insert(0, {repo!r})
import emotion_lightning.faces.detector as detector
from tests.helpers import CountingFaceFinder

detector.FaceDetector = CountingFaceFinder
from emotion_lightning.cli.train import main

main()
"""


@pytest.mark.slow
def test_ddp_detects_faces_on_one_process_only(tmp_path, raw_photos):
    """trainer=ddp_sim: one process detects and writes report.csv, both train on the crops."""
    script = tmp_path / "train_with_counted_faces.py"
    script.write_text(TRAIN_WITH_COUNTED_FACES.format(repo=str(REPO)))
    calls, run, cache = tmp_path / "face_calls.txt", tmp_path / "run", tmp_path / "cache"
    proc = run_ddp(
        [sys.executable, str(script), "trainer=ddp_sim", "data=wild", f"data.root={raw_photos}",
         "data.detect_faces=true", "data.classes=[happy,sad]", f"data.cache_dir={cache}",
         "data.train_fraction=0.5", "data.test_fraction=0", "data.batch_size=2",
         "data.num_workers=0", "trainer.max_epochs=1", "trainer.num_sanity_val_steps=0",
         "test=false", "logger=csv", "extras.print_config=false", f"hydra.run.dir={run}"],
        cwd=tmp_path, outputs=[calls, run, cache], env={"FACE_CALLS": str(calls)})
    assert "GLOBAL_RANK: 1" in proc.stderr + proc.stdout, "two processes ran"
    assert len({pid for pid, _ in face_calls(calls)}) == 1, "faces detected on one process only"
    assert sum(n for _, n in face_calls(calls)) == 16
    (report,) = cache.glob("faces-*/report.csv")
    with report.open(newline="") as f:
        sources = [row["source"] for row in csv.DictReader(f)]
    assert len(set(sources)) == len(sources) == 16, "one report row per photo"
    assert (run / "metrics.json").is_file()

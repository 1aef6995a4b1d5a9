"""CK+: sequence layout and CK+48, subject k-fold (never by frame), label files, bad inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from emotion_lightning.data import CKPlusDataModule
from emotion_lightning.data.ckplus import CKPLUS_CLASSES, SUBJECT
from emotion_lightning.data.label_files import LabelFileError
from tests.dataset_fixtures import label_shade, shade_of, write_ck48, write_ckplus


def ck_label(dm, label: int) -> int:
    """CK+'s own label (0-7) of the datamodule's class index ``label``."""
    return CKPLUS_CLASSES.index(dm.class_names[label])


@pytest.fixture
def ckplus(tmp_path):
    return write_ckplus(tmp_path / "ckplus")


def setup_all(root, **kwargs):
    """A datamodule of every CK+ label (neutral only when onset frames are taken), set up."""
    classes = CKPLUS_CLASSES if kwargs.get("neutral_frames") else CKPLUS_CLASSES[1:]
    dm = CKPlusDataModule(root, classes=list(classes), cache_dir=None, **kwargs)
    dm.setup()
    return dm


def test_ckplus_sequences_peak_frames_and_labels(ckplus):
    dm = setup_all(ckplus, folds=3, fold=0)
    # 6 subjects x 2 sequences x 3 peak frames, dealt into 3 folds of 2 subjects
    assert {s: len(d) for s, d in dm.datasets.items()} == {"test": 12, "val": 12, "train": 12}
    assert "neutral" not in dm.class_names  # no neutral frames unless asked
    for ds in dm.datasets.values():
        for image, label in zip(ds.images, ds.labels):  # the landmarks' box, under its label
            assert abs(shade_of(image) - label_shade(ck_label(dm, label))) < 4


def test_ckplus_neutral_onset_frames(ckplus):
    dm = setup_all(ckplus, folds=3, peak_frames=2, neutral_frames=1)
    labels = np.concatenate([d.labels for d in dm.datasets.values()])
    assert len(labels) == 36 and (labels == 0).sum() == 12
    for ds in dm.datasets.values():
        for image, label in zip(ds.images, ds.labels):
            assert abs(shade_of(image) - label_shade(ck_label(dm, label))) < 4


def test_ckplus_folds_split_by_subject(ckplus):
    """The test folds cover every frame exactly once."""
    tests = []
    for fold in range(3):
        dm = setup_all(ckplus, folds=3, fold=fold)
        sizes = [len(d) for d in dm.datasets.values()]
        assert sum(sizes) == 36
        tests.append(dm.datasets["test"].images.index)
    covered = np.concatenate(tests)
    assert len(covered) == 36 and len(np.unique(covered)) == 36


def test_ckplus_subjects_never_straddle_splits(ckplus):
    dm = CKPlusDataModule(ckplus, classes=list(CKPLUS_CLASSES[1:]), folds=3, cache_dir=None)
    dm.setup()
    frames = sorted((ckplus / "cohn-kanade-images").rglob("*.png"))
    subject_of = {}
    for path in frames:
        subject_of[path] = SUBJECT.match(path.name).group(1)
    # the datamodule's frames are the last three of each sequence, in path order
    peak = [p for p in frames if int(p.stem[-8:]) > 2]
    by_index = {i: subject_of[p] for i, p in enumerate(peak)}
    split_subjects = {s: {by_index[int(i)] for i in d.images.index} for s, d in dm.datasets.items()}
    assert not split_subjects["test"] & split_subjects["train"]
    assert not split_subjects["test"] & split_subjects["val"]
    assert not split_subjects["val"] & split_subjects["train"]


@pytest.mark.parametrize("text, message", [
    ("   9.0000000e+00\n", r"_emotion.txt:1: emotion 9.0000000e\+00 is not an integer 0-7"),
    ("   2.5000000e+00\n", r"_emotion.txt:1: emotion 2.5000000e\+00 is not an integer 0-7"),
    ("three\n", r"_emotion.txt:1: 'three' is not a number"),
])
def test_ckplus_bad_emotion_files_name_file_and_line(ckplus, text, message):
    next((ckplus / "Emotion").rglob("*_emotion.txt")).write_text(text)
    with pytest.raises(LabelFileError, match=message):
        setup_all(ckplus, folds=3)


def test_ckplus_missing_images_landmarks_and_box_outside_are_reported(ckplus, caplog):
    for frame in (ckplus / "cohn-kanade-images" / "S005" / "001").glob("*.png"):
        frame.unlink()  # a labelled sequence whose images are missing
    (ckplus / "Landmarks" / "S010" / "001" / "S010_001_00000005_landmarks.txt").unlink()
    (ckplus / "Landmarks" / "S010" / "002" / "S010_002_00000005_landmarks.txt").write_text(
        "".join("   9.0e+02   9.0e+02\n" for _ in range(68)) + "   9.1e+02   9.1e+02\n")
    with caplog.at_level(logging.WARNING):
        dm = setup_all(ckplus, folds=3)
    assert sum(len(d) for d in dm.datasets.values()) == 36 - 3 - 1 - 1
    assert "left out 1 row(s): labelled sequence without images" in caplog.text
    assert "S005_001_00000005_emotion.txt" in caplog.text
    assert "left out 1 row(s): frame without a landmarks file" in caplog.text
    assert "left out 1 row(s): face box outside the image (e.g. " in caplog.text


def test_ckplus_neutral_needs_onset_frames(ckplus):
    with pytest.raises(ValueError, match="data.neutral_frames=1"):
        CKPlusDataModule(ckplus, classes=["neutral", "happy"], folds=3, cache_dir=None).setup()


def test_ckplus_without_landmarks_says_what_is_needed(ckplus):
    import shutil

    shutil.rmtree(ckplus / "Landmarks")
    with pytest.raises(FileNotFoundError, match="Landmarks/ folder is missing.*CK\\+48"):
        setup_all(ckplus, folds=3)


def test_ck48_class_folders_by_subject(tmp_path):
    root = write_ck48(tmp_path / "CK+48")
    classes = ["angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"]
    dm = CKPlusDataModule(root, classes=classes, folds=3, fold=1, cache_dir=None)
    dm.setup()
    assert {s: len(d) for s, d in dm.datasets.items()} == {"test": 42, "val": 42, "train": 42}
    for ds in dm.datasets.values():
        for image, label in zip(ds.images, ds.labels):
            assert abs(shade_of(image) - label_shade(CKPLUS_CLASSES.index(classes[label]))) < 4
    with pytest.raises(ValueError, match=r"has no \['neutral'\] folder"):
        CKPlusDataModule(root, classes=["neutral", "happy"], folds=3, cache_dir=None).setup()


def test_ck48_file_without_subject_fails_naming_it(tmp_path):
    root = write_ck48(tmp_path / "CK+48")
    import cv2

    cv2.imwrite(str(root / "happy" / "frame_01.png"), np.full((48, 48), 99, np.uint8))
    with pytest.raises(LabelFileError, match="frame_01.png: the file name does not start with"):
        CKPlusDataModule(root, folds=3, cache_dir=None).setup()


def test_ckplus_fold_arguments(ckplus):
    with pytest.raises(ValueError, match="0 <= fold < folds"):
        CKPlusDataModule("x", folds=5, fold=5)
    with pytest.raises(ValueError, match="6 subjects cannot fill 10 folds; lower data.folds"):
        setup_all(ckplus, folds=10)

"""ExpW: faces cut from label.lst's boxes, a split that keeps each photo whole, bad inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from emotion_lightning.constants import FER_EMOTIONS
from emotion_lightning.data import ExpWDataModule
from emotion_lightning.data.expw import joined_groups, read_expw_labels
from emotion_lightning.data.label_files import LabelFileError
from tests.dataset_fixtures import label_shade, shade_of, write_expw


@pytest.fixture
def expw(tmp_path):
    return write_expw(tmp_path / "ExpW")


def test_expw_faces_labels_and_photo_safe_split(expw):
    dm = ExpWDataModule(expw, classes=list(FER_EMOTIONS), train_fraction=0.6, test_fraction=0.2,
                        cache_dir=None)
    dm.setup()
    assert sum(len(d) for d in dm.datasets.values()) == 40 and all(dm.datasets.values())
    for ds in dm.datasets.values():
        for image, label in zip(ds.images, ds.labels):  # each box, under its own label
            assert abs(shade_of(image) - label_shade(label)) < 4
    table = read_expw_labels(expw / "label" / "label.lst")
    photo_split = {}
    for split, ds in dm.datasets.items():
        for row in ds.images.index:  # rows of label.lst (every face usable here)
            assert photo_split.setdefault(table.names[row], split) == split


def test_joined_groups_merge_through_either_id():
    groups = joined_groups(np.array([0, 0, 1, 2, 3]), np.array([5, 6, 6, 7, 8]))
    assert groups[0] == groups[1] == groups[2] and len(set(groups.tolist())) == 3


@pytest.mark.parametrize("line, message", [
    ("x.jpg 0 1 2 3 4 50.0 7", r"label.lst:41: label 7 is outside 0-6"),
    ("x.jpg 0 1 2 3 4 50.0 -1", r"label.lst:41: label -1 is outside 0-6"),
    ("x.jpg 0 1 2 3 4 50.0", r"label.lst:41: 7 fields, expected 8"),
    ("x.jpg 0 top 2 3 4 50.0 1", r"label.lst:41: .*numbers after the name"),
])
def test_expw_bad_label_lines_name_file_and_line(expw, line, message):
    label_file = expw / "label" / "label.lst"
    label_file.write_text(label_file.read_text() + line + "\n")
    with pytest.raises(LabelFileError, match=message):
        ExpWDataModule(expw, cache_dir=None).setup()


def test_expw_missing_photo_and_box_outside_are_reported(expw, caplog):
    (expw / "image" / "origin" / "happy_people_1.jpg").unlink()
    label_file = expw / "label" / "label.lst"
    label_file.write_text(label_file.read_text() + "sad_people_2.jpg 1 400 400 460 460 50.0 4\n")
    dm = ExpWDataModule(expw, classes=list(FER_EMOTIONS), cache_dir=None, train_fraction=0.6,
                        test_fraction=0.2)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert sum(len(d) for d in dm.datasets.values()) == 39
    assert "left out 1 row(s): image file missing (e.g. " in caplog.text
    assert "label.lst:3)" in caplog.text
    assert "left out 1 row(s): face box outside the image (e.g. " in caplog.text
    assert "label.lst:41)" in caplog.text


def test_expw_has_no_contempt(expw):
    with pytest.raises(ValueError, match="ExpW has no class 'contempt'"):
        ExpWDataModule(expw, classes=["happy", "contempt"])

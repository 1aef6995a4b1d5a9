"""FER+: votes aligned with FER2013's pixels, majority and probability label modes, bad files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from emotion_lightning.data import FERPlusDataModule
from emotion_lightning.data.ferplus import FERPLUS_CLASSES, majority_labels, read_ferplus_votes
from emotion_lightning.data.label_files import LabelFileError
from tests.dataset_fixtures import FERPLUS_ODD_VOTES, label_shade, shade_of, write_ferplus


@pytest.fixture
def ferplus(tmp_path):
    return write_ferplus(tmp_path / "ferplus")


def test_majority_drops_unknown_not_a_face_and_ties():
    votes = np.array([*FERPLUS_ODD_VOTES.values(), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                      [1, 0, 0, 0, 0, 0, 0, 4, 0, 3]])
    labels, dropped = majority_labels(votes)
    np.testing.assert_array_equal(labels, [-1, -1, -1, -1, 7])
    assert [int(d.sum()) for d in dropped.values()] == [1, 2, 1]


def test_ferplus_majority_split_and_labels(ferplus, caplog):
    dm = FERPlusDataModule(ferplus, classes=list(FERPLUS_CLASSES), cache_dir=None, batch_size=4,
                           num_workers=0)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert {s: len(d) for s, d in dm.datasets.items()} == {"train": 32, "val": 16, "test": 16}
    for ds in dm.datasets.values():
        for image, label in zip(ds.images, ds.labels):
            assert abs(shade_of(image) - label_shade(label)) < 3  # FER+ column = class index here
    assert "most votes on unknown or not-a-face (NF)" in caplog.text
    assert "a tie for the most votes" in caplog.text and "fer2013new.csv:66" in caplog.text
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 1, 48, 48) and y.dtype == torch.int64


def test_ferplus_probability_targets(ferplus, caplog):
    classes = ["happy", "surprise", "neutral"]
    dm = FERPlusDataModule(ferplus, classes=classes, label_mode="probability", cache_dir=None,
                           batch_size=5, num_workers=0, augment=False)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    train = dm.datasets["train"]
    # the Training rows of majority neutral, happy, surprise and contempt (3 votes for neutral)
    # and the tie and the unknown row; those of sad ... fear and the NF row have no vote here
    assert len(train) == 4 * 4 + 2
    assert "left out 17 row(s): probability targets: no vote on the chosen classes" in caplog.text
    assert "majority label" not in caplog.text  # Training's odd rows are targets here
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (5, 1, 48, 48) and y.dtype == torch.float32 and y.shape == (5, 3)
    torch.testing.assert_close(y.sum(dim=1), torch.ones(5))
    targets = {tuple(round(float(v), 3) for v in t) for t in train.targets}
    assert (round(6 / 9, 3), round(3 / 9, 3), 0.0) in targets  # happy 6, surprise 3
    assert (0.0, 0.0, 1.0) in targets  # contempt 6 + neutral 3: only neutral is chosen
    assert (0.5, 0.0, 0.5) in targets  # the 5/5 tie of neutral and happy is kept as a target
    assert dm.class_counts("train") == np.bincount(train.targets.argmax(1), minlength=3).tolist()
    _, y_val = next(iter(dm.val_dataloader()))
    assert y_val.dtype == torch.int64 and len(dm.datasets["val"]) == 6


@pytest.mark.parametrize("edit, message", [
    (lambda lines: lines[:40] + lines[41:], "has 66 rows but .*fer2013.csv 67"),
    (lambda lines: lines[:3] + ["Training,x.png,0,11,0,0,0,0,0,0,0,0"] + lines[4:],
     r"fer2013new.csv:4: vote count '11' is not an integer 0-10"),
    (lambda lines: lines[:3] + ["Training,x.png,0,1,0"] + lines[4:], r"fer2013new.csv:4: 5 fields"),
    (lambda lines: lines[:3] + ["Testing,x.png,0,10,0,0,0,0,0,0,0,0"] + lines[4:],
     r"fer2013new.csv:4: Usage 'Testing'"),
    (lambda lines: lines[:3] + ["PrivateTest,x.png,0,10,0,0,0,0,0,0,0,0"] + lines[4:],
     r"fer2013new.csv:4: Usage 'PrivateTest', but that row of .*fer2013.csv is 'Training'"),
    (lambda lines: ["Usage,Image name,neutral"] + lines[1:], r"fer2013new.csv:1: header"),
])
def test_ferplus_bad_vote_files_name_file_and_line(ferplus, edit, message):
    votes = ferplus / "fer2013new.csv"
    votes.write_text("\n".join(edit(votes.read_text().splitlines())) + "\n")
    with pytest.raises(LabelFileError, match=message):
        FERPlusDataModule(ferplus, cache_dir=None).setup()


def test_ferplus_reads_every_row(ferplus):
    table = read_ferplus_votes(ferplus / "fer2013new.csv")
    assert table.votes.shape == (67, 10) and table.lines[0] == 2


def test_ferplus_pixels_from_another_folder(ferplus, tmp_path):
    elsewhere = tmp_path / "fer2013"
    elsewhere.mkdir()
    (ferplus / "fer2013.csv").rename(elsewhere / "fer2013.csv")
    dm = FERPlusDataModule(ferplus / "fer2013new.csv", fer_csv=elsewhere, cache_dir=None)
    dm.setup("test")
    assert len(dm.datasets["test"]) == 10  # two PrivateTest rows of each of the five classes


def test_ferplus_missing_pixels_say_where_to_get_them(ferplus):
    (ferplus / "fer2013.csv").unlink()
    with pytest.raises(FileNotFoundError, match="fer2013.csv.*Kaggle"):
        FERPlusDataModule(ferplus, cache_dir=None).setup()


def test_ferplus_unknown_class_and_mode():
    with pytest.raises(ValueError, match="label_mode must be one of"):
        FERPlusDataModule("x", label_mode="soft")
    with pytest.raises(ValueError, match="use data.loader=workers"):
        FERPlusDataModule("x", label_mode="probability", loader="device")

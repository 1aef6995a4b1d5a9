"""AffectNet: faces cut from the listed boxes, 8-10 dropped, validation.csv = test, bad lists."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from emotion_lightning.data import AffectNetDataModule
from emotion_lightning.data.affectnet import AFFECTNET_CLASSES, read_affectnet_list
from emotion_lightning.data.decoded import ImageRows
from emotion_lightning.data.label_files import LabelFileError
from tests.dataset_fixtures import label_shade, shade_of, write_affectnet


@pytest.fixture
def affectnet(tmp_path):
    return write_affectnet(tmp_path / "affectnet")


def edit_line(path, line_no: int, edit) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = edit(lines[line_no - 1])
    path.write_text("\n".join(lines) + "\n")


def with_expression(line: str, expression: str) -> str:
    """The row ``line`` with its expression (the field after the quoted landmarks) replaced."""
    head, _, tail = line.rpartition('",')
    return f'{head}",{expression},{tail.split(",", 1)[1]}'


def test_affectnet_eight_classes_faces_from_boxes(affectnet, tmp_path, caplog):
    dm = AffectNetDataModule(affectnet, classes=list(AFFECTNET_CLASSES), val_fraction=0.2,
                             cache_dir=tmp_path / "cache", batch_size=4, num_workers=0)
    with caplog.at_level(logging.INFO):
        dm.setup()
    sizes = {s: len(d) for s, d in dm.datasets.items()}
    assert sizes["train"] + sizes["val"] == 40 and sizes["val"] == 8 and sizes["test"] == 16
    assert "dropped 3 rows without an emotion (none 1, uncertain 1, no-face 1)" in caplog.text
    assert isinstance(dm.datasets["test"].images, ImageRows)
    for ds in dm.datasets.values():
        for image, label in zip(ds.images, ds.labels):  # the box exactly: no black border
            assert abs(shade_of(image) - label_shade(label)) < 4
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 48, 48) and y.dtype == torch.int64


def test_affectnet_seven_class_protocol_and_test_only(affectnet):
    seven = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    dm = AffectNetDataModule(affectnet, classes=seven, cache_dir=None)
    dm.setup("test")
    assert set(dm.datasets) == {"test"} and len(dm.datasets["test"]) == 14
    assert "contempt" not in dm.class_names


def test_affectnet_table_keeps_valence_arousal(affectnet):
    table = read_affectnet_list(affectnet / "training.csv")
    assert len(table.paths) == 43 and table.lines[0] == 2
    assert table.valence.dtype == np.float32 and (np.abs(table.valence[:40]) <= 1).all()
    assert (table.arousal[40:] == -2).all()
    np.testing.assert_array_equal(table.boxes[0, 2:] - table.boxes[0, :2], [64, 64])


def test_affectnet_valence_arousal_follow_each_split(affectnet):
    dm = AffectNetDataModule(affectnet, classes=list(AFFECTNET_CLASSES), val_fraction=0.2,
                             cache_dir=None)
    dm.setup()
    for split, list_name in (("train", "training.csv"), ("val", "training.csv"),
                             ("test", "validation.csv")):
        table, rows = dm.tables[list_name], dm.table_rows[split]
        assert len(rows) == len(dm.datasets[split])
        np.testing.assert_array_equal(table.expressions[rows],
                                      [AFFECTNET_CLASSES.index(dm.class_names[y])
                                       for y in dm.datasets[split].labels])
        assert (np.abs(table.valence[rows]) <= 1).all() and (np.abs(table.arousal[rows]) <= 1).all()


def test_affectnet_lists_in_the_file_lists_folder_without_header(affectnet):
    lists = affectnet / "Manually_Annotated_file_lists"
    lists.mkdir()
    for name in ("training.csv", "validation.csv"):
        lines = (affectnet / name).read_text().splitlines()
        (affectnet / name).unlink()
        (lists / name).write_text("\n".join(lines[1:]) + "\n")
    dm = AffectNetDataModule(affectnet, cache_dir=None)
    dm.setup("test")
    assert len(dm.datasets["test"]) == 10  # five classes, two each


@pytest.mark.parametrize("edit, message", [
    (lambda line: with_expression(line, "11"), r"training.csv:3: expression 11 is outside 0-10"),
    (lambda line: with_expression(line, "-1"), r"training.csv:3: expression -1 is outside 0-10"),
    (lambda line: line.replace(",64,64,", ",64,wide,", 1), r"training.csv:3: .*must be numbers"),
    (lambda line: line.split('"')[0], r"training.csv:3: 6 fields, expected 9"),
])
def test_affectnet_bad_rows_name_file_and_line(affectnet, edit, message):
    edit_line(affectnet / "training.csv", 3, edit)
    with pytest.raises(LabelFileError, match=message):
        AffectNetDataModule(affectnet, cache_dir=None).setup("fit")


def test_affectnet_missing_image_and_box_outside_are_reported(affectnet, caplog):
    train_list = affectnet / "training.csv"
    table = read_affectnet_list(train_list)
    (affectnet / "Manually_Annotated_Images" / table.paths[0]).unlink()
    edit_line(train_list, 3, lambda line: line.replace(
        line.split(",")[1] + "," + line.split(",")[2], "500,10", 1))
    dm = AffectNetDataModule(affectnet, classes=list(AFFECTNET_CLASSES), val_fraction=0.2,
                             cache_dir=None)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == 38
    assert "left out 1 row(s): image file missing (e.g. " in caplog.text
    assert "training.csv:2)" in caplog.text
    assert "left out 1 row(s): face box outside the image (e.g. " in caplog.text
    assert "training.csv:3)" in caplog.text


def test_affectnet_class_check_and_missing_lists(tmp_path):
    with pytest.raises(ValueError, match="'bored' is not an emotion name"):
        AffectNetDataModule(tmp_path, classes=["happy", "bored"])
    with pytest.raises(FileNotFoundError, match="training.csv.*mohammadmahoor.com"):
        AffectNetDataModule(tmp_path, cache_dir=None).setup("fit")

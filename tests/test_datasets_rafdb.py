"""RAF-DB basic: the official split from the names, label order, bad label files and images."""

from __future__ import annotations

import logging
import pickle

import cv2
import numpy as np
import pytest
import torch

from emotion_lightning.data import RAFDBDataModule
from emotion_lightning.data.decoded import ImageRows
from emotion_lightning.data.label_files import LabelFileError
from emotion_lightning.data.rafdb import RAFDB_CLASSES, read_rafdb_labels
from tests.dataset_fixtures import label_shade, shade_of, write_rafdb


@pytest.fixture
def rafdb(tmp_path):
    return write_rafdb(tmp_path / "basic")


def test_rafdb_official_split_and_label_order(rafdb, tmp_path):
    dm = RAFDBDataModule(rafdb, classes=["happy", "surprise", "neutral"], val_fraction=0.34,
                         cache_dir=tmp_path / "cache", batch_size=4, num_workers=0)
    dm.setup()
    sizes = {s: len(d) for s, d in dm.datasets.items()}
    assert sizes["test"] == 9 and sizes["train"] + sizes["val"] == 18 and sizes["val"] >= 3
    assert isinstance(dm.datasets["train"].images, ImageRows)  # memory-mapped, not copied
    raf_label = {"happy": 4, "surprise": 1, "neutral": 7}  # RAF-DB labels 1-7
    for ds in dm.datasets.values():
        for image, label in zip(ds.images, ds.labels):
            expected = label_shade(raf_label[dm.class_names[label]])
            assert abs(shade_of(image) - expected) < 4
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 48, 48) and y.dtype == torch.int64


def test_rafdb_loader_workers_read_the_memory_map(rafdb, tmp_path):
    dm = RAFDBDataModule(rafdb, cache_dir=tmp_path / "cache", batch_size=30, num_workers=1,
                         augment=False)
    dm.setup("test")
    (x, y), = list(dm.test_dataloader())
    assert x.shape == (15, 1, 48, 48) and sorted(y.tolist()) == sorted(dm.datasets["test"].labels)


def test_rafdb_device_loader_gathers_the_memory_map(rafdb, tmp_path):
    options = dict(cache_dir=tmp_path / "cache", batch_size=8, augment=False)
    device = RAFDBDataModule(rafdb, loader="device", **options)
    workers = RAFDBDataModule(rafdb, num_workers=0, **options)
    for dm in (device, workers):
        dm.setup("test")
    for (x, y), (x_ref, y_ref) in zip(device.test_dataloader(), workers.test_dataloader()):
        torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-6)
        assert torch.equal(y, y_ref)


def test_rafdb_reads_the_label_file(rafdb):
    table = read_rafdb_labels(rafdb / "EmoLabel" / "list_patition_label.txt")
    assert len(table.names) == 63 and table.names[0] == "train_00001.jpg"
    assert RAFDB_CLASSES[table.labels[0]] == "surprise"  # label 1
    assert set(table.splits) == {"train", "test"}


@pytest.mark.parametrize("line, message", [
    ("train_09999.jpg 8", r"list_patition_label.txt:64: label '8' is not 1-7"),
    ("train_09999.jpg 0", r"list_patition_label.txt:64: label '0' is not 1-7"),
    ("val_00001.jpg 3", r"list_patition_label.txt:64: image name 'val_00001.jpg' starts with"),
    ("train_09999.jpg", r"list_patition_label.txt:64: expected"),
])
def test_rafdb_bad_label_lines_name_file_and_line(rafdb, line, message):
    label_file = rafdb / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text(label_file.read_text() + line + "\n")
    with pytest.raises(LabelFileError, match=message):
        RAFDBDataModule(rafdb, cache_dir=None).setup()


def test_rafdb_missing_image_is_left_out_and_reported(rafdb, caplog):
    (rafdb / "Image" / "aligned" / "train_00002_aligned.jpg").unlink()
    dm = RAFDBDataModule(rafdb, classes=list(RAFDB_CLASSES), cache_dir=None)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert sum(len(d) for d in dm.datasets.values()) == 62
    assert "left out 1 row(s): image file missing" in caplog.text
    assert "list_patition_label.txt:2" in caplog.text


def test_rafdb_unreadable_image_is_left_out_and_reported(rafdb, caplog):
    (rafdb / "Image" / "aligned" / "test_00001_aligned.jpg").write_bytes(b"not a jpeg")
    dm = RAFDBDataModule(rafdb, classes=list(RAFDB_CLASSES), cache_dir=None)
    with caplog.at_level(logging.WARNING):
        dm.setup("test")
    assert len(dm.datasets["test"]) == 20
    assert "unreadable image" in caplog.text and "list_patition_label.txt:" in caplog.text


def test_rafdb_has_no_contempt(rafdb):
    with pytest.raises(ValueError, match=r"RAF-DB has no class 'contempt'; its classes are "
                                         r"\['surprise', 'fear'"):
        RAFDBDataModule(rafdb, classes=["happy", "contempt"])


def test_rafdb_missing_label_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="whdeng.cn/RAF"):
        RAFDBDataModule(tmp_path, cache_dir=None).setup()


def test_rafdb_cache_is_reused_and_follows_the_files(rafdb, tmp_path):
    cache = tmp_path / "cache"
    first = RAFDBDataModule(rafdb, classes=list(RAFDB_CLASSES), cache_dir=cache)
    first.setup("test")
    entries = sorted(p.name for p in cache.iterdir())
    RAFDBDataModule(rafdb, classes=list(RAFDB_CLASSES), cache_dir=cache).setup("test")
    assert sorted(p.name for p in cache.iterdir()) == entries
    rows = first.datasets["test"].images
    data = pickle.dumps(rows)  # DataLoader workers under spawn get the file names, not pixels
    assert len(data) < 2000 < rows.shape[0] * 48 * 48
    np.testing.assert_array_equal(pickle.loads(data)[3], rows[3])
    cv2.imwrite(str(rafdb / "Image" / "aligned" / "test_00001_aligned.jpg"),
                np.full((100, 100), 250, np.uint8))
    RAFDBDataModule(rafdb, classes=list(RAFDB_CLASSES), cache_dir=cache).setup("test")
    assert len(list(cache.iterdir())) == 2 * len(entries)  # a changed image: a new entry

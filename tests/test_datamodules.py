"""Datamodules: class subsets, official/random splits, blank frames, presets, synthetic faces,
the loader keywords they share."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from emotion_lightning.constants import FER_EMOTIONS, GRAY_MEAN, GRAY_STD, class_positions
from emotion_lightning.data import (
    FERDataModule,
    GrayImageDataModule,
    SyntheticDataModule,
    WildDataModule,
    select_classes,
)
from emotion_lightning.data.base import LoaderOptions, SoftTargetDataset, faces_of
from emotion_lightning.data.presets import GrayPreset, normalize_batch
from emotion_lightning.data.synthetic import make_synthetic
from emotion_lightning.images import to_gray
from tests.conftest import fer_images, write_fer_folder


def test_select_classes_remaps_in_given_order():
    keep, labels = select_classes(np.array([0, 3, 5, 6, 3]), ["a", "b", "c", "d", "e", "f", "g"],
                                  ["g", "d"])
    np.testing.assert_array_equal(keep, [1, 3, 4])
    np.testing.assert_array_equal(labels, [1, 0, 1])
    with pytest.raises(ValueError, match=r"\['z'\] are not among them \(the classes of this "
                                         r"dataset are \['a'\]\)"):
        select_classes(np.array([0]), ["a"], ["z"])


def test_class_positions_names_what_is_wrong():
    seven = list(FER_EMOTIONS)
    assert class_positions(["Sadness", "angry"], seven, "x", "y") == [4, 0]  # aliases, given order
    for wrong, problem in ((["happy", "happiness"], r"\['happy'\] named more than once"),
                           (["happy"], "fewer than 2 classes"),
                           (["happy", "calm"], r"\['calm'\] are not among them")):
        with pytest.raises(ValueError, match=rf"score_classes \[.*\]: {problem} \(the classes "
                                             r"of the checkpoint are \['angry', 'disgust'"):
            class_positions(wrong, seven, "score_classes", "the checkpoint", 2)


def test_fer_class_subset_and_official_split_with_private(fer_csv):
    dm = FERDataModule(fer_csv, classes=["surprise", "angry"], cache_dir=None, drop_blank=False,
                       batch_size=4)
    dm.setup()
    for split, expected in {"train": 12, "val": 6, "test": 6}.items():
        labels = dm.datasets[split].labels
        assert len(labels) == expected and set(labels) == {0, 1}
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 48, 48) and x.dtype == torch.float32


def test_fer_official_without_private_holds_out_training(fer_folder):
    dm = FERDataModule(fer_folder, cache_dir=None, drop_blank=False, val_fraction=0.25)
    dm.setup()
    assert len(dm.datasets["test"]) == 12  # every PublicTest image of the five classes
    assert len(dm.datasets["val"]) + len(dm.datasets["train"]) == 38
    assert 7 <= len(dm.datasets["val"]) <= 12


def test_keeping_some_classes_keeps_the_splits_made_for_all(fer_folder):
    seven = list(FER_EMOTIONS)
    full = FERDataModule(fer_folder, classes=seven, cache_dir=None, drop_blank=False,
                         val_fraction=0.25, seed=3)
    full.setup("fit")
    kept = FERDataModule(fer_folder, classes=seven, cache_dir=None, drop_blank=False,
                         val_fraction=0.25, seed=3)
    kept.keep_classes(["sad", "angry", "happy"], ["validate", "test"])
    assert kept.class_names == ["sad", "angry", "happy"]
    for split in ("train", "val", "test"):
        ds, whole = kept.datasets[split], full.datasets[split]
        rows = np.flatnonzero(np.isin(whole.labels, [4, 0, 3]))  # sad, angry, happy
        np.testing.assert_array_equal(ds.images, whole.images[rows])  # the same faces, in order
        names = [seven[label] for label in whole.labels[rows]]
        assert ds.labels.tolist() == [["sad", "angry", "happy"].index(n) for n in names]
    assert kept.class_counts("val") == np.bincount(kept.datasets["val"].labels, minlength=3).tolist()
    with pytest.raises(ValueError, match=r"keep_classes \['sad', 'fear'\]: \['fear'\] are not "
                                         "among them"):
        kept.keep_classes(["sad", "fear"], ["test"])  # fear was left out


def test_keeping_classes_of_soft_targets_renormalises_their_columns():
    targets = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]], np.float32)
    soft = SoftTargetDataset(np.zeros((3, 4, 4), np.uint8), targets, transform=None)
    kept = faces_of(soft, ["a", "b", "c"], ["c", "a"])  # class 2 becomes 0, class 0 becomes 1
    assert isinstance(kept, SoftTargetDataset) and kept.labels.tolist() == [1, 0]
    torch.testing.assert_close(kept.targets, torch.tensor([[0.2, 0.5], [0.8, 0.1]]) /
                               torch.tensor([[0.7], [0.9]]))


def test_fer_test_only_copy_evaluates(tmp_path):
    images, labels = fer_images(3)
    root = write_fer_folder(tmp_path / "only_test", images, labels, ["PublicTest"] * 21)
    dm = FERDataModule(root, cache_dir=None, drop_blank=False)
    dm.setup("test")
    assert len(dm.datasets["test"]) == 15
    with pytest.raises(ValueError, match=r"no samples in split\(s\) \['train', 'val'\]"):
        FERDataModule(root, cache_dir=None, drop_blank=False).setup("fit")


def test_random_split_keeps_duplicates_on_one_side(tmp_path):
    images, labels = fer_images(20)
    images[1::3] = images[0::3][: len(images[1::3])]  # many exact duplicates
    root = write_fer_folder(tmp_path / "dups", images, labels, ["Training"] * len(labels))
    dm = FERDataModule(root, classes=["angry", "happy", "sad"], split="random", cache_dir=None,
                       drop_blank=False, seed=5)
    dm.setup()
    train = {im.tobytes() for im in dm.datasets["train"].images}
    assert not any(im.tobytes() in train for im in dm.datasets["val"].images)
    assert dm.datasets["test"] is not None and len(dm.datasets["test"]) == len(dm.datasets["val"])


def test_blank_frames_are_dropped(tmp_path):
    images, labels = fer_images(4)
    images[:5] = 0
    root = write_fer_folder(tmp_path / "blank", images, labels, ["Training"] * len(labels))
    kept = FERDataModule(root, classes=["angry", "disgust"], split="random", cache_dir=None)
    kept.setup()
    total = sum(len(d) for k, d in kept.datasets.items() if k != "test")
    assert total == 8 - 5


def test_gray_preset_normalises_and_augments():
    image = np.full((48, 48), 128, np.uint8)
    out = GrayPreset(64)(image)
    assert out.shape == (1, 64, 64)
    assert torch.allclose(out, torch.full_like(out, (128 / 255 - GRAY_MEAN) / GRAY_STD), atol=1e-5)
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    augmented = GrayPreset(48, train=True)
    assert not torch.equal(augmented(face), augmented(face))
    assert torch.equal(GrayPreset(48)(face), normalize_batch([face], 48)[0])


def test_to_gray_is_bt601():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200
    assert to_gray(rgb)[0, 0] == round(0.299 * 200)
    assert to_gray(np.zeros((3, 3, 4), np.uint8)).shape == (3, 3)
    assert to_gray(np.full((2, 2), 65535, np.uint16)).max() == 255


def test_synthetic_is_deterministic_balanced_and_varied():
    a, la = make_synthetic(["happy", "sad"], 40, seed=3)
    b, lb = make_synthetic(["happy", "sad"], 40, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert np.bincount(la).tolist() == [20, 20]
    assert len({im.tobytes() for im in a}) == 40
    dm = SyntheticDataModule(num_train=20, num_val=10, num_test=10, batch_size=5)
    dm.setup()
    assert dm.class_counts("train") == [4, 4, 4, 4, 4]
    with pytest.raises(ValueError, match="not an emotion name"):
        SyntheticDataModule(classes=["bored"])


def test_loader_options_are_the_base_class_keywords():
    keywords = list(inspect.signature(GrayImageDataModule.__init__).parameters)[2:]
    assert keywords == list(LoaderOptions.__annotations__)


@pytest.mark.parametrize("datamodule", [FERDataModule, SyntheticDataModule, WildDataModule])
def test_datamodules_pass_every_loader_keyword_on(datamodule, tmp_path):
    loader = {"image_size": 40, "batch_size": 5, "num_workers": 0, "augment": False,
              "augmentation": {"rotate": 5.0}, "pin_memory": False}
    root = [] if datamodule is SyntheticDataModule else [tmp_path]
    dm = datamodule(*root, **loader)
    assert {name: getattr(dm, name) for name in loader} == loader
    with pytest.raises(TypeError, match="batchsize"):
        datamodule(*root, batchsize=5)

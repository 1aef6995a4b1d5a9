"""Stratified, seeded splits that keep identical images together."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_lightning.data import FERDataModule, WildDataModule
from emotion_lightning.data.splits import pixel_groups, random_split, stratified_group_split


def _data_with_duplicates(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (600, 8, 8), dtype=np.uint8)
    labels = rng.choice(5, size=600, p=[0.1, 0.05, 0.45, 0.2, 0.2])
    copies = rng.choice(600, size=150, replace=False)
    images[copies[:75]] = images[copies[75:]]  # 75 exact duplicates, some with other labels
    return images, labels


def test_pixel_groups_match_identical_arrays():
    images, _ = _data_with_duplicates()
    groups = pixel_groups(images)
    for i, j in [(0, 1), (5, 9)]:
        assert (groups[i] == groups[j]) == np.array_equal(images[i], images[j])
    assert len(np.unique(groups)) == len({im.tobytes() for im in images})


def test_duplicates_never_straddle_and_strata_hold():
    images, labels = _data_with_duplicates()
    groups = pixel_groups(images)
    train, val = stratified_group_split(labels, groups, (0.8, 0.2), seed=3)
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == len(labels)
    train_keys = {images[i].tobytes() for i in train}
    assert not any(images[i].tobytes() in train_keys for i in val)
    for label in range(5):
        share = np.mean(labels[val] == label) / np.mean(labels == label)
        assert 0.75 < share < 1.25, (label, share)
    assert abs(len(val) / len(labels) - 0.2) < 0.03


def test_split_is_seeded():
    images, labels = _data_with_duplicates()
    groups = pixel_groups(images)
    a = stratified_group_split(labels, groups, (0.7, 0.3), seed=1)
    b = stratified_group_split(labels, groups, (0.7, 0.3), seed=1)
    c = stratified_group_split(labels, groups, (0.7, 0.3), seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_three_way_split_with_empty_part():
    labels = np.arange(100) % 4
    parts = stratified_group_split(labels, np.arange(100), (0.8, 0.2, 0.0), seed=0)
    assert [len(p) for p in parts] == [80, 20, 0]


@pytest.mark.parametrize("train, test", [(0.8, 0.2), (0.7, 0.4), (0.0, 0.1), (1.0, 0.0), (0.7, -0.1)])
def test_fer_and_wild_refuse_the_same_fractions(tmp_path, train, test):
    for make in (lambda: FERDataModule(tmp_path, split="random", train_fraction=train,
                                       test_fraction=test),
                 lambda: WildDataModule(tmp_path, train_fraction=train, test_fraction=test)):
        with pytest.raises(ValueError, match="the rest is validation"):
            make()
    for val_fraction in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"val_fraction .* must be in \[0, 1\)"):
            FERDataModule(tmp_path, val_fraction=val_fraction)


def test_random_split_tests_on_val_without_a_test_part():
    images = np.arange(40 * 4, dtype=np.uint8).reshape(40, 2, 2)
    labels = np.repeat([0, 1], 20)
    parts = random_split(images, labels, 0.7, 0.0, seed=0)
    assert parts["test"] is parts["val"] and len(parts["train"]) + len(parts["val"]) == 40
    three = random_split(images, labels, 0.6, 0.2, seed=0)
    assert sorted(np.concatenate(list(three.values())).tolist()) == list(range(40))

"""Seeded, stratified splits that never put identical images on both sides."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)


def pixel_groups(images: np.ndarray) -> np.ndarray:
    """Group id per image: images with identical pixel arrays share an id."""
    ids: dict[bytes, int] = {}
    out = np.empty(len(images), dtype=np.int64)
    for i, image in enumerate(images):
        digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest()
        out[i] = ids.setdefault(digest, len(ids))
    return out


def stratified_group_split(
    labels: np.ndarray, groups: np.ndarray, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Split indices into ``len(fractions)`` parts, stratified by label, whole groups at a time.

    Every member of a group lands in the same part; a group counts under the label of its
    first member. Fractions are normalised to sum to one. Parts are sorted index arrays.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if len(fractions) < 2 or (fractions < 0).any() or fractions.sum() <= 0:
        raise ValueError(f"fractions must be >= 0 with a positive sum, got {list(fractions)}")
    fractions = fractions / fractions.sum()
    rng = np.random.default_rng(seed)
    _, first, inverse, sizes = np.unique(
        groups, return_index=True, return_inverse=True, return_counts=True
    )
    group_label = labels[first]
    assignment = np.empty(len(first), dtype=np.int64)
    for label in np.unique(group_label):
        members = np.flatnonzero(group_label == label)
        members = members[rng.permutation(len(members))]
        cumulative = np.cumsum(sizes[members])
        targets = np.cumsum(fractions)[:-1] * cumulative[-1]
        # a group goes to the part whose share its midpoint falls in
        midpoints = cumulative - sizes[members] / 2.0
        assignment[members] = np.searchsorted(targets, midpoints, side="right")
    part_of_index = assignment[inverse]
    return [np.flatnonzero(part_of_index == k) for k in range(len(fractions))]


def check_fractions(train_fraction: float, test_fraction: float) -> None:
    """Fail unless ``train_fraction`` and ``test_fraction`` leave a validation part."""
    if not 0 < train_fraction < 1 or not 0 <= test_fraction < 1 - train_fraction:
        raise ValueError(
            f"need 0 < train_fraction < 1, test_fraction >= 0 and train_fraction + test_fraction "
            f"< 1 (the rest is validation), got train_fraction={train_fraction}, "
            f"test_fraction={test_fraction}"
        )


def random_split(
    images: np.ndarray, labels: np.ndarray, train_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Index arrays of the train, val and test parts: seeded, stratified, identical images on
    one side (:func:`stratified_group_split`); with ``test_fraction`` 0 the test part is the
    val part."""
    check_fractions(train_fraction, test_fraction)
    fractions = (train_fraction, 1 - train_fraction - test_fraction, test_fraction)
    train, val, test = stratified_group_split(labels, pixel_groups(images), fractions, seed)
    if len(test) == 0:
        log.info("no test part (test_fraction=%s): the test split is the val split", test_fraction)
        test = val
    return {"train": train, "val": val, "test": test}

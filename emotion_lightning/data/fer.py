"""FERDataModule: FER2013 restricted to a class subset, official or duplicate-safe random split."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emotion_lightning.constants import DEFAULT_CLASSES, FER_EMOTIONS
from emotion_lightning.data.base import GrayImageDataModule, LoaderOptions, select_classes
from emotion_lightning.data.cache import DEFAULT_CACHE_DIR
from emotion_lightning.data.fer_files import load_fer
from emotion_lightning.data.splits import (
    check_fractions,
    pixel_groups,
    random_split,
    stratified_group_split,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

log = logging.getLogger(__name__)
SPLIT_MODES = ("official", "random")


def blank_mask(images: np.ndarray, min_std: float = 2.0) -> np.ndarray:
    """True for (near-)constant frames such as FER's all-black images."""
    flat = np.asarray(images).reshape(len(images), -1).astype(np.float32)
    return flat.std(axis=1) < min_std


class FERDataModule(GrayImageDataModule):
    """FER2013 from the Kaggle CSV or the folder layout.

    Args:
        root: a ``fer2013.csv`` file, a folder holding it, or the ``{train,test}/<emotion>``
            folder layout.
        classes: ordered subset of the seven FER emotions (default: the recipe's five).
        split: ``official`` — Training → train, PublicTest → val, PrivateTest → test; when
            PrivateTest is absent, ``val_fraction`` of Training is held out for validation and
            PublicTest becomes the test split; ``val_fraction=0`` holds nothing out (a refit
            on all of Training with settings chosen on an earlier run's validation: no
            validation split, the last epoch is tested). ``random`` — seeded, stratified
            fractions of all images (``train_fraction`` / rest for val; ``test_fraction`` for
            an optional test split, otherwise test reports on val), never splitting identical
            images.
        drop_blank: drop constant frames (FER holds all-black and placeholder images).
        cache_dir: where decoded images are cached (``None`` disables the cache).
        loader: ``image_size``, ``batch_size``, ``num_workers``, ``augment``, ``augmentation``,
            ``pin_memory``: see :class:`GrayImageDataModule`.
    """

    #: The emotions FER2013 labels (the Kaggle CSV's order).
    DATASET_CLASSES = FER_EMOTIONS
    #: FER2013's faces are all 48 x 48.
    NATIVE_SIZE = 48

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] = DEFAULT_CLASSES,
        split: str = "official",
        train_fraction: float = 0.8,
        test_fraction: float = 0.0,
        val_fraction: float = 0.1,
        seed: int = 42,
        drop_blank: bool = True,
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
        **loader: Unpack[LoaderOptions],
    ) -> None:
        super().__init__(classes, **loader)
        self.validation_optional = split == "official" and val_fraction == 0
        if split not in SPLIT_MODES:
            raise ValueError(f"split must be one of {SPLIT_MODES}, got {split!r}")
        check_fractions(train_fraction, test_fraction)
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction (of Training, held out for validation) must be in "
                             f"[0, 1) (0: no validation, a refit on all of Training), got "
                             f"{val_fraction}")
        self.root = Path(root).expanduser()
        self.split = split
        self.train_fraction = train_fraction
        self.test_fraction = test_fraction
        self.val_fraction = val_fraction
        self.seed = seed
        self.drop_blank = drop_blank
        self.cache_dir = cache_dir

    def load_splits(self, stage: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        table = load_fer(self.root, self.cache_dir)
        keep, labels = select_classes(table.labels, FER_EMOTIONS, self.class_names)
        if self.drop_blank:
            not_blank = ~blank_mask(table.images[keep])
            log.info("dropped %d blank frames", int((~not_blank).sum()))
            keep, labels = keep[not_blank], labels[not_blank]
        images = np.asarray(table.images[keep])
        usages = np.asarray(table.usages)[keep]
        if self.split == "official":
            parts = self._official(images, labels, usages)
        else:
            parts = self._random(images, labels)
        return {name: (images[idx], labels[idx]) for name, idx in parts.items()}

    def _official(self, images, labels, usages) -> dict[str, np.ndarray]:
        train = np.flatnonzero(usages == "Training")
        public = np.flatnonzero(usages == "PublicTest")
        private = np.flatnonzero(usages == "PrivateTest")
        if len(private):
            return {"train": train, "val": public, "test": private}
        if len(train) == 0:  # evaluation on a test-only copy
            return {"test": public}
        if len(public) == 0:
            raise ValueError(
                f"{self.root}: every image is Training (a CSV without a Usage column, or no "
                "test/ folder), so split=official has no test split and would report no test "
                "metrics. Add a Usage column (Training/PublicTest/PrivateTest) or a test/ folder, "
                "or use data.split=random (optionally with data.test_fraction=0.1)."
            )
        if self.val_fraction == 0:
            log.info("no PrivateTest images and val_fraction=0: training on all of Training (no "
                     "validation), testing on PublicTest")
            return {"train": train, "test": public}
        log.info("no PrivateTest images: validating on %.0f%% of Training, testing on PublicTest",
                 100 * self.val_fraction)
        groups = pixel_groups(images[train])
        fit, val = stratified_group_split(
            labels[train], groups, (1 - self.val_fraction, self.val_fraction), self.seed
        )
        return {"train": train[fit], "val": train[val], "test": public}

    def _random(self, images, labels) -> dict[str, np.ndarray]:
        return random_split(images, labels, self.train_fraction, self.test_fraction, self.seed)

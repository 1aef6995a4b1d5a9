"""RAFDBDataModule: RAF-DB basic (7 emotions), the official train/test split from the names."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emotion_lightning.constants import DEFAULT_CLASSES, canonical_emotion
from emotion_lightning.data.base import GrayImageDataModule, LoaderOptions, select_classes
from emotion_lightning.data.cache import DEFAULT_CACHE_DIR
from emotion_lightning.data.face_boxes import listed_faces
from emotion_lightning.data.label_files import (
    LabelFileError,
    SkipReport,
    require_classes,
    require_file,
)
from emotion_lightning.data.splits import pixel_groups, stratified_group_split
from emotion_lightning.textfiles import open_text

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

log = logging.getLogger(__name__)
#: RAF-DB's own names of its labels 1-7, in order, and their canonical names.
RAFDB_LABELS: tuple[str, ...] = ("surprise", "fear", "disgust", "happiness", "sadness", "anger",
                                 "neutral")
RAFDB_CLASSES: tuple[str, ...] = tuple(canonical_emotion(n) for n in RAFDB_LABELS)
LABEL_FILE = "EmoLabel/list_patition_label.txt"
IMAGE_DIR = "Image/aligned"
HOW_TO_GET = (
    "RAF-DB is licensed for research by its authors: request it at http://www.whdeng.cn/RAF/"
    "model1.html, unpack the basic set and pass data.root=<folder holding EmoLabel/ and Image/>.")


@dataclass(frozen=True)
class RAFDBTable:
    """The rows of ``list_patition_label.txt``: image names, labels 0-6 (RAFDB_CLASSES), splits
    (``train``/``test`` from the name prefix) and line numbers."""

    names: list[str]
    labels: np.ndarray
    splits: np.ndarray
    lines: np.ndarray


def read_rafdb_labels(path: str | Path) -> RAFDBTable:
    """Parse ``list_patition_label.txt`` (``train_00001.jpg 5`` per line); a malformed line,
    a label outside 1-7 or a name that is neither ``train_`` nor ``test_`` raises
    :class:`LabelFileError` naming file and line."""
    path = Path(path)
    names, labels, splits, lines = [], [], [], []
    with open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}:{line_no}"
            if len(fields) != 2:
                raise LabelFileError(f"{where}: expected '<name>.jpg <label 1-7>', got {line.strip()!r}")
            name, label = fields
            if not label.isdigit() or not 1 <= int(label) <= len(RAFDB_CLASSES):
                raise LabelFileError(f"{where}: label {label!r} is not 1-7 {RAFDB_LABELS}")
            split = name.split("_", 1)[0]
            if split not in ("train", "test"):
                raise LabelFileError(f"{where}: image name {name!r} starts with neither train_ "
                                     "nor test_, so its official split is unknown")
            names.append(name)
            labels.append(int(label) - 1)
            splits.append(split)
            lines.append(line_no)
    if not names:
        raise LabelFileError(f"{path}: no label lines")
    return RAFDBTable(names, np.asarray(labels, np.int64), np.asarray(splits),
                      np.asarray(lines, np.int64))


def aligned_name(name: str) -> str:
    """``train_00001.jpg`` -> ``train_00001_aligned.jpg`` (the file under Image/aligned)."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}_aligned.{suffix}" if dot else f"{name}_aligned"


class RAFDBDataModule(GrayImageDataModule):
    """RAF-DB basic: the aligned 100x100 faces, official train/test split.

    Args:
        root: the folder holding ``EmoLabel/list_patition_label.txt`` and ``Image/aligned/``.
        classes: ordered subset of RAF-DB's seven emotions (``class_set=rafdb7``: all of them).
        val_fraction: share of the official train images held out (seeded, stratified, never
            splitting identical images) for validation; the test split is RAF-DB's test set.
        cache_dir: decoded faces are cached here (memory-mapped); ``None`` disables.
        loader: ``image_size``, ``batch_size``, ``num_workers``, ``augment``, ``augmentation``,
            ``pin_memory``: see :class:`GrayImageDataModule`.

    Listed images that are missing or unreadable are left out and reported with counts.
    """

    #: The emotions this dataset labels (cross-dataset evaluation reads it).
    DATASET_CLASSES = RAFDB_CLASSES

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] = DEFAULT_CLASSES,
        val_fraction: float = 0.1,
        seed: int = 42,
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
        **loader: Unpack[LoaderOptions],
    ) -> None:
        super().__init__(classes, **loader)
        require_classes(self.class_names, RAFDB_CLASSES, "RAF-DB")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        self.root = Path(root).expanduser()
        self.val_fraction = val_fraction
        self.seed = seed
        self.cache_dir = cache_dir

    def load_splits(self, stage: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        label_file = require_file(self.root / LABEL_FILE, "RAF-DB label file", HOW_TO_GET)
        table = read_rafdb_labels(label_file)
        report = SkipReport("RAF-DB")
        paths = [self.root / IMAGE_DIR / aligned_name(n) for n in table.names]
        places = [f"{label_file}:{n}" for n in table.lines]
        images, ok = listed_faces(self.cache_dir, "rafdb", paths, None, self.image_size, places,
                                  report)
        report.log()
        keep, labels = select_classes(table.labels, RAFDB_CLASSES, self.class_names)
        keep, labels = keep[ok[keep]], labels[ok[keep]]
        images, splits = images[keep], table.splits[keep]
        train, test = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
        fit, val = stratified_group_split(labels[train], pixel_groups(images[train]),
                                          (1 - self.val_fraction, self.val_fraction), self.seed)
        parts = {"train": train[fit], "val": train[val], "test": test}
        return {s: (images[i], labels[i]) for s, i in parts.items()}

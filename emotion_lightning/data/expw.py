"""ExpWDataModule: the Expression in-the-Wild faces cut from label.lst's boxes, with a seeded,
stratified split that never puts one photo (or one face's pixels) in two splits."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emotion_lightning.constants import DEFAULT_CLASSES, FER_EMOTIONS
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
#: ExpW's labels 0-6 follow FER2013's order.
EXPW_CLASSES: tuple[str, ...] = FER_EMOTIONS
LABEL_FILE = "label/label.lst"
IMAGE_DIR = "image/origin"
FIELDS = "image_name face_id top left right bottom confidence label"
HOW_TO_GET = (
    "ExpW is available for research from its authors' page (http://mmlab.ie.cuhk.edu.hk/"
    "projects/socialrelation/index.html): unpack it and pass data.root=<folder holding "
    "label/label.lst and image/origin/>.")


@dataclass(frozen=True)
class ExpWTable:
    """The rows of ``label.lst``: image names, face boxes ``[N, 4]`` (left, top, right,
    bottom), detector confidences, labels 0-6 (FER order) and line numbers."""

    names: list[str]
    boxes: np.ndarray
    confidence: np.ndarray
    labels: np.ndarray
    lines: np.ndarray


def read_expw_labels(path: str | Path) -> ExpWTable:
    """Parse ``label.lst`` (``image_name face_id top left right bottom confidence label``); a
    line without the eight fields, a number that does not parse or a label outside 0-6 raises
    :class:`LabelFileError` naming file and line."""
    path = Path(path)
    names, boxes, confidence, labels, lines = [], [], [], [], []
    with open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}:{line_no}"
            if len(fields) != 8:
                raise LabelFileError(f"{where}: {len(fields)} fields, expected 8 ({FIELDS})")
            try:
                top, left, right, bottom, score = (float(v) for v in fields[2:7])
                label = int(fields[7])
            except ValueError as error:
                raise LabelFileError(f"{where}: {error} ({FIELDS}: numbers after the name)") from None
            if not 0 <= label < len(EXPW_CLASSES):
                raise LabelFileError(f"{where}: label {label} is outside 0-6 {EXPW_CLASSES}")
            names.append(fields[0])
            boxes.append((left, top, right, bottom))
            confidence.append(score)
            labels.append(label)
            lines.append(line_no)
    if not names:
        raise LabelFileError(f"{path}: no label lines")
    return ExpWTable(names, np.asarray(boxes, np.float32), np.asarray(confidence, np.float32),
                     np.asarray(labels, np.int64), np.asarray(lines, np.int64))


def joined_groups(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Group ids where samples sharing a ``first`` id or a ``second`` id are one group."""
    parent = list(range(len(first)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for ids in (first, second):
        seen: dict[int, int] = {}
        for i, g in enumerate(ids.tolist()):
            j = seen.setdefault(g, i)
            parent[root(i)] = root(j)
    return np.asarray([root(i) for i in range(len(first))], np.int64)


class ExpWDataModule(GrayImageDataModule):
    """ExpW: faces cut (FER-like framing) from the boxes of ``label/label.lst`` in the photos
    of ``image/origin/``; seeded, stratified train/val/test by photo (the faces of one photo,
    and identical faces, stay in one split).

    Args:
        root: the folder holding ``label/label.lst`` and ``image/origin/``.
        classes: ordered subset of ExpW's seven emotions (FER2013's).
        train_fraction, test_fraction: shares of train and test; the rest validates.
        seed: the split's seed.
        cache_dir: decoded faces are cached here (memory-mapped); ``None`` disables.
        loader: ``image_size``, ``batch_size``, ``num_workers``, ``augment``, ``augmentation``,
            ``pin_memory``: see :class:`GrayImageDataModule`.

    Missing or unreadable photos and boxes outside their photo are left out and reported.
    """

    #: The emotions this dataset labels (cross-dataset evaluation reads it).
    DATASET_CLASSES = EXPW_CLASSES

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] = DEFAULT_CLASSES,
        train_fraction: float = 0.8,
        test_fraction: float = 0.1,
        seed: int = 42,
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
        **loader: Unpack[LoaderOptions],
    ) -> None:
        super().__init__(classes, **loader)
        require_classes(self.class_names, EXPW_CLASSES, "ExpW")
        if not (0 < train_fraction < 1 and 0 < test_fraction < 1 - train_fraction):
            raise ValueError(f"need 0 < train_fraction, 0 < test_fraction and their sum < 1, "
                             f"got {train_fraction}, {test_fraction}")
        self.root = Path(root).expanduser()
        self.train_fraction, self.test_fraction = train_fraction, test_fraction
        self.seed = seed
        self.cache_dir = cache_dir

    def load_splits(self, stage: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        label_file = require_file(self.root / LABEL_FILE, "ExpW label file", HOW_TO_GET)
        table = read_expw_labels(label_file)
        report = SkipReport("ExpW")
        faces, ok = listed_faces(self.cache_dir, "expw", [self.root / IMAGE_DIR / n for n in table.names],
                                 table.boxes, self.image_size,
                                 [f"{label_file}:{n}" for n in table.lines], report)
        report.log()
        keep, labels = select_classes(table.labels, EXPW_CLASSES, self.class_names)
        keep, labels = keep[ok[keep]], labels[ok[keep]]
        faces = faces[keep]
        _, photos = np.unique(np.asarray(table.names)[keep], return_inverse=True)
        groups = joined_groups(photos, pixel_groups(faces))
        val_fraction = 1 - self.train_fraction - self.test_fraction
        parts = stratified_group_split(labels, groups, (self.train_fraction, val_fraction,
                                                        self.test_fraction), self.seed)
        return {s: (faces[i], labels[i]) for s, i in zip(("train", "val", "test"), parts)}

"""AffectNetDataModule: AffectNet's manually annotated faces cut from their boxes, the 7- and
8-class protocols (validation.csv is the test split); valence and arousal kept in the table."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emotion_lightning.constants import DEFAULT_CLASSES, canonical_emotion
from emotion_lightning.data.base import (
    STAGE_SPLITS,
    GrayImageDataModule,
    LoaderOptions,
    select_classes,
)
from emotion_lightning.data.cache import DEFAULT_CACHE_DIR
from emotion_lightning.data.face_boxes import listed_faces
from emotion_lightning.data.label_files import (
    LabelFileError,
    SkipReport,
    require_classes,
    require_file,
)
from emotion_lightning.data.splits import stratified_group_split
from emotion_lightning.textfiles import TextEncodingError, open_text

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

log = logging.getLogger(__name__)
#: AffectNet's own names of its expressions 0-7, in order, and their canonical names; 8-10
#: are the rows without an emotion.
AFFECTNET_LABELS: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust",
                                     "anger", "contempt")
AFFECTNET_CLASSES: tuple[str, ...] = tuple(canonical_emotion(n) for n in AFFECTNET_LABELS)
NO_EMOTION: tuple[str, ...] = ("none", "uncertain", "no-face")  # expressions 8, 9, 10
COLUMNS: tuple[str, ...] = ("subDirectory_filePath", "face_x", "face_y", "face_width",
                            "face_height", "facial_landmarks", "expression", "valence", "arousal")
IMAGE_DIR = "Manually_Annotated_Images"
LIST_DIRS = ("", "Manually_Annotated_file_lists")
HOW_TO_GET = (
    "AffectNet is licensed for research by its authors: request it at http://mohammadmahoor.com/"
    "affectnet/ and pass data.root=<folder holding Manually_Annotated_Images/ and training.csv, "
    "validation.csv (or Manually_Annotated_file_lists/)>.")


@dataclass(frozen=True)
class AffectNetTable:
    """The rows of an AffectNet list: image paths (relative to Manually_Annotated_Images),
    face boxes ``[N, 4]`` (left, top, right, bottom), expressions 0-10, valence, arousal
    (-2 where the annotators gave none) and line numbers."""

    paths: list[str]
    boxes: np.ndarray
    expressions: np.ndarray
    valence: np.ndarray
    arousal: np.ndarray
    lines: np.ndarray


def read_affectnet_list(path: str | Path) -> AffectNetTable:
    """Parse ``training.csv`` / ``validation.csv`` in one pass (linear in the rows; the landmarks
    are not parsed). The header line is optional. A row without the nine columns, a number
    that does not parse or an expression outside 0-10 raises :class:`LabelFileError` naming
    file and line."""
    path = Path(path)
    paths, boxes, expressions, valence, arousal, lines = [], [], [], [], [], []
    try:
        with open_text(path) as f:
            reader = csv.reader(f)
            line_no = 1
            for row in reader:
                start, line_no = line_no, reader.line_num + 1
                where = f"{path}:{start}"
                if not row:
                    continue
                if len(paths) == 0 and row[0].strip() == COLUMNS[0]:
                    continue  # the header
                if len(row) != len(COLUMNS):
                    raise LabelFileError(f"{where}: {len(row)} fields, expected {len(COLUMNS)} "
                                         f"({','.join(COLUMNS)})")
                try:
                    x, y, w, h = (float(v) for v in row[1:5])
                    expression = int(row[6])
                    values = float(row[7]), float(row[8])
                except ValueError as error:
                    raise LabelFileError(f"{where}: {error} (face box, expression, valence and "
                                         "arousal must be numbers)") from None
                if not 0 <= expression <= 10:
                    raise LabelFileError(f"{where}: expression {expression} is outside 0-10 "
                                         f"({AFFECTNET_LABELS + NO_EMOTION})")
                paths.append(row[0].strip())
                boxes.append((x, y, x + w, y + h))
                expressions.append(expression)
                valence.append(values[0])
                arousal.append(values[1])
                lines.append(start)
    except csv.Error as error:
        raise LabelFileError(f"{path}:{line_no}: {error}") from None
    except TextEncodingError as error:
        raise LabelFileError(str(error)) from None
    if not paths:
        raise LabelFileError(f"{path}: no data rows")
    return AffectNetTable(paths, np.asarray(boxes, np.float32).reshape(-1, 4),
                          np.asarray(expressions, np.int64), np.asarray(valence, np.float32),
                          np.asarray(arousal, np.float32), np.asarray(lines, np.int64))


class AffectNetDataModule(GrayImageDataModule):
    """AffectNet (manually annotated part): faces cut from the listed boxes with our FER-like
    framing; training.csv is the train split (``val_fraction`` of it held out, seeded and
    stratified, never splitting an image), validation.csv the test split.

    Args:
        root: the folder holding ``Manually_Annotated_Images/`` and the two lists (there or
            in ``Manually_Annotated_file_lists/``).
        classes: ordered subset of the eight emotions: ``class_set=affectnet8`` is the
            AffectNet-8 protocol, ``class_set=seven`` AffectNet-7 (no contempt).
        val_fraction: share of training.csv held out for validation (model selection).
        cache_dir: the decoded faces are cached here, memory-mapped (290k faces are never all
            in RAM), built once in resumable chunks; ``None`` keeps them in RAM.
        loader: ``image_size``, ``batch_size``, ``num_workers``, ``augment``, ``augmentation``,
            ``pin_memory``: see :class:`GrayImageDataModule`.

    Rows of expressions 8-10 (none, uncertain, no face) are dropped and counted; missing or
    unreadable images and boxes outside their image are left out and reported with counts.
    """

    #: The emotions this dataset labels (cross-dataset evaluation reads it).
    DATASET_CLASSES = AFFECTNET_CLASSES

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] = DEFAULT_CLASSES,
        val_fraction: float = 0.05,
        seed: int = 42,
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
        **loader: Unpack[LoaderOptions],
    ) -> None:
        super().__init__(classes, **loader)
        require_classes(self.class_names, AFFECTNET_CLASSES, "AffectNet")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        self.root = Path(root).expanduser()
        self.val_fraction = val_fraction
        self.seed = seed
        self.cache_dir = cache_dir
        #: The parsed lists, and for each split the rows of its list each sample comes from
        #: (``tables["training.csv"].valence[table_rows["train"]]``: the train samples' valence).
        self.tables: dict[str, AffectNetTable] = {}
        self.table_rows: dict[str, np.ndarray] = {}

    def _list(self, name: str) -> Path:
        for folder in LIST_DIRS:
            if (self.root / folder / name).is_file():
                return self.root / folder / name
        return require_file(self.root / name, f"AffectNet list {name}", HOW_TO_GET)

    def _faces(self, name: str, report: SkipReport) -> tuple:
        """(faces, labels, list rows) of the usable rows of list ``name`` in ``classes``."""
        list_file = self._list(name)
        table = self.tables[name] = read_affectnet_list(list_file)
        dropped = np.bincount(table.expressions, minlength=11)[8:]
        if dropped.any():
            log.info("AffectNet %s: dropped %d rows without an emotion (%s)", name, dropped.sum(),
                     ", ".join(f"{n} {c}" for n, c in zip(NO_EMOTION, dropped.tolist())))
        rows = np.flatnonzero(table.expressions < 8)
        images = self.root / IMAGE_DIR
        faces, ok = listed_faces(
            self.cache_dir, f"affectnet {name}", [images / table.paths[i] for i in rows],
            table.boxes[rows], self.image_size, [f"{list_file}:{table.lines[i]}" for i in rows],
            report)
        keep, labels = select_classes(table.expressions[rows], AFFECTNET_CLASSES, self.class_names)
        keep, labels = keep[ok[keep]], labels[ok[keep]]
        return faces[keep], labels, rows[keep]

    def load_splits(self, stage: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        needed = STAGE_SPLITS.get(stage or "", ("train", "val", "test"))
        report = SkipReport("AffectNet")
        parts = {}
        if "train" in needed or "val" in needed:
            faces, labels, rows = self._faces("training.csv", report)
            paths = self.tables["training.csv"].paths
            _, groups = np.unique(np.asarray(paths)[rows], return_inverse=True)
            fit, val = stratified_group_split(labels, groups,
                                              (1 - self.val_fraction, self.val_fraction), self.seed)
            parts["train"], parts["val"] = (faces[fit], labels[fit]), (faces[val], labels[val])
            self.table_rows["train"], self.table_rows["val"] = rows[fit], rows[val]
        if "test" in needed:
            faces, labels, self.table_rows["test"] = self._faces("validation.csv", report)
            parts["test"] = (faces, labels)
        report.log()
        return parts

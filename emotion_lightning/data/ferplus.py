"""FERPlusDataModule: FER2013's faces with the FER+ relabelling (ten annotator votes per face),
as majority labels or as vote distributions (soft targets)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emotion_lightning.constants import DEFAULT_CLASSES, canonical_emotion
from emotion_lightning.data.base import (
    GrayImageDataModule,
    LoaderOptions,
    SoftTargetDataset,
    select_classes,
)
from emotion_lightning.data.cache import DEFAULT_CACHE_DIR
from emotion_lightning.data.fer_files import USAGES, _csv_rows, load_fer
from emotion_lightning.data.label_files import (
    LabelFileError,
    SkipReport,
    require_classes,
    require_file,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

log = logging.getLogger(__name__)
#: The vote columns of fer2013new.csv, in order.
VOTE_COLUMNS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                                 "fear", "contempt", "unknown", "NF")
#: The canonical names of the first eight columns: FER+'s emotions.
FERPLUS_CLASSES: tuple[str, ...] = tuple(canonical_emotion(n) for n in VOTE_COLUMNS[:8])
LABEL_MODES = ("majority", "probability")
HOW_TO_GET = (
    "FER+ is fer2013new.csv from https://github.com/microsoft/FERPlus (MIT licence) next to the "
    "pixels of Kaggle's fer2013.csv (the 'challenges-in-representation-learning-facial-"
    "expression-recognition-challenge' data); pass data.root=<folder with fer2013new.csv> and "
    "data.fer_csv=<fer2013.csv>.")


@dataclass(frozen=True)
class FERPlusTable:
    """The rows of ``fer2013new.csv``: votes ``[N, 10]`` (VOTE_COLUMNS), usages, line numbers."""

    votes: np.ndarray
    usages: np.ndarray
    lines: np.ndarray


def read_ferplus_votes(path: str | Path) -> FERPlusTable:
    """Parse ``fer2013new.csv``; a wrong header, a row without ten vote counts, a vote that
    is not a count 0-10 or an unknown Usage raises :class:`LabelFileError` naming file:line."""
    path = Path(path)
    rows = _csv_rows(path)
    header = [h.strip() for h in next(rows, (1, []))[1]]
    expected = ["Usage", "Image name", *VOTE_COLUMNS]
    if header != expected:
        raise LabelFileError(f"{path}:1: header is {header!r}, expected {','.join(expected)}")
    votes, usages, lines = [], [], []
    for line_no, row in rows:
        if not row:
            continue
        where = f"{path}:{line_no}"
        if len(row) != len(expected):
            raise LabelFileError(f"{where}: {len(row)} fields, expected {len(expected)} "
                                 f"({','.join(expected)})")
        usage = row[0].strip()
        if usage not in USAGES:
            raise LabelFileError(f"{where}: Usage {usage!r} is not one of {USAGES}")
        counts = [v.strip() for v in row[2:]]
        bad = next((v for v in counts if not (v.isdigit() and int(v) <= 10)), None)
        if bad is not None:
            raise LabelFileError(f"{where}: vote count {bad!r} is not an integer 0-10")
        votes.append([int(v) for v in counts])
        usages.append(usage)
        lines.append(line_no)
    if not votes:
        raise LabelFileError(f"{path}: no data rows")
    return FERPlusTable(np.asarray(votes, np.int64), np.asarray(usages), np.asarray(lines))


def majority_labels(votes: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The FER+ majority label (column 0-7) of each row, -1 where the FER+ protocol drops it,
    and the dropped rows by reason: most votes on unknown/NF, a tie for most votes, no votes."""
    top = votes.max(axis=1)
    winners = (votes == top[:, None]).sum(axis=1)
    label = votes.argmax(axis=1)
    dropped = {"no votes": top == 0,
               "most votes on unknown or not-a-face (NF)": (top > 0) & (label >= 8) & (winners == 1),
               "a tie for the most votes": (top > 0) & (winners > 1)}
    out = np.where(dropped["no votes"] | dropped["a tie for the most votes"] | (label >= 8), -1, label)
    return out, dropped


class FERPlusDataModule(GrayImageDataModule):
    """FER+: the faces of ``fer2013.csv`` labelled by the votes of ``fer2013new.csv`` (row i of
    one is row i of the other); Training / PublicTest / PrivateTest = train / val / test.

    Args:
        root: ``fer2013new.csv`` or the folder holding it.
        fer_csv: Kaggle's ``fer2013.csv`` (the pixels) or its folder; default: in ``root``.
        classes: ordered subset of FER+'s eight emotions (``class_set=ferplus8``: all).
        label_mode: ``majority`` — the emotion with the most votes; rows whose most votes are
            unknown/NF, ties and rows without votes are dropped (the FER+ paper's protocol).
            ``probability`` — training batches yield ``y`` as float32 ``[B, C]`` vote
            distributions over ``classes`` (rows renormalised; rows with no vote on them
            dropped and counted); validation and test batches yield the majority labels.
            Needs ``loader="workers"``.
        cache_dir: the decoded pixels of fer2013.csv are cached here; ``None`` disables.
        loader: ``image_size``, ``batch_size``, ``num_workers``, ``augment``, ``augmentation``,
            ``pin_memory``: see :class:`GrayImageDataModule`.
    """

    #: The emotions this dataset labels (cross-dataset evaluation reads it).
    DATASET_CLASSES = FERPLUS_CLASSES
    #: FER2013's faces are all 48 x 48.
    NATIVE_SIZE = 48

    def __init__(
        self,
        root: str | Path,
        fer_csv: str | Path | None = None,
        classes: Sequence[str] = DEFAULT_CLASSES,
        label_mode: str = "majority",
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
        **loader: Unpack[LoaderOptions],
    ) -> None:
        super().__init__(classes, **loader)
        require_classes(self.class_names, FERPLUS_CLASSES, "FER+")
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {label_mode!r}")
        if label_mode == "probability" and self.loader != "workers":
            raise ValueError("label_mode=probability trains on vote distributions, which only the "
                             "DataLoader carries: use data.loader=workers (the device loader "
                             "holds one label per image)")
        self.root = Path(root).expanduser()
        self.fer_csv = Path(fer_csv).expanduser() if fer_csv else None
        self.label_mode = label_mode
        self.cache_dir = cache_dir
        self._targets: np.ndarray | None = None

    def _files(self) -> tuple[Path, Path]:
        votes = self.root if self.root.suffix == ".csv" else self.root / "fer2013new.csv"
        pixels = self.fer_csv or votes.parent / "fer2013.csv"
        if pixels.is_dir():
            pixels = pixels / "fer2013.csv"
        return (require_file(votes, "FER+ vote file fer2013new.csv", HOW_TO_GET),
                require_file(pixels, "FER2013 pixel file fer2013.csv", HOW_TO_GET))

    def load_splits(self, stage: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        votes_file, pixels_file = self._files()
        table = read_ferplus_votes(votes_file)
        fer = load_fer(pixels_file, self.cache_dir)
        if len(fer) != len(table.votes):
            raise LabelFileError(f"{votes_file} has {len(table.votes)} rows but {pixels_file} "
                                 f"{len(fer)}: row i of one must be row i of the other (use the "
                                 "original, unfiltered fer2013.csv)")
        differ = np.flatnonzero(np.asarray(fer.usages) != table.usages)
        if len(differ):
            row = differ[0]
            raise LabelFileError(f"{votes_file}:{table.lines[row]}: Usage "
                                 f"{str(table.usages[row])!r}, but that row of {pixels_file} is "
                                 f"{str(fer.usages[row])!r}: the files are not row-aligned")
        report = SkipReport("FER+")
        majority, dropped = majority_labels(table.votes)
        soft = self.label_mode == "probability"
        majority_rows = table.usages != "Training" if soft else np.ones(len(majority), bool)
        for reason, rows in dropped.items():
            for i in np.flatnonzero(rows & majority_rows):
                report.add(f"majority label: {reason}", f"{votes_file}:{table.lines[i]}")
        keep, labels = select_classes(np.maximum(majority, 0), FERPLUS_CLASSES, self.class_names)
        keep, labels = keep[majority[keep] >= 0], labels[majority[keep] >= 0]
        parts = {split: (fer.images[keep[fer.usages[keep] == usage]],
                         labels[fer.usages[keep] == usage])
                 for split, usage in zip(("train", "val", "test"), USAGES)}
        if soft:
            columns = [FERPLUS_CLASSES.index(c) for c in self.class_names]
            train = np.flatnonzero(np.asarray(fer.usages) == "Training")
            chosen = table.votes[train][:, columns].astype(np.float32)
            total = chosen.sum(axis=1)
            for i in train[total == 0]:
                report.add("probability targets: no vote on the chosen classes",
                           f"{votes_file}:{table.lines[i]}")
            voted = total > 0
            self._targets = chosen[voted] / total[voted, None]
            parts["train"] = (fer.images[train[voted]], self._targets.argmax(axis=1))
        report.log()
        return parts

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        train = self.datasets.get("train")
        if self.label_mode == "probability" and train is not None and not isinstance(
                train, SoftTargetDataset):
            self.datasets["train"] = SoftTargetDataset(train.images, self._targets, train.transform)

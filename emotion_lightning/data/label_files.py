"""What the official-layout readers (RAF-DB, AffectNet, FER+, ExpW, CK+) share: errors naming
``file:line``, the report of rows left out, image checks and the dataset's class list."""

from __future__ import annotations

import logging
import os
import stat
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from emotion_lightning.constants import canonical_emotion

log = logging.getLogger(__name__)


class LabelFileError(ValueError):
    """A label file that does not follow its dataset's format (the message names file:line)."""


class SkipReport:
    """Rows left out of a dataset, counted by reason, with the first places of each."""

    def __init__(self, dataset: str, examples: int = 3) -> None:
        self.dataset = dataset
        self.counts: Counter[str] = Counter()
        self.places: dict[str, list[str]] = defaultdict(list)
        self.examples = examples

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        if len(self.places[reason]) < self.examples:
            self.places[reason].append(where)

    def log(self) -> None:
        """One warning per reason: how many rows, and where the first ones are."""
        for reason, count in self.counts.items():
            log.warning("%s: left out %d row(s): %s (e.g. %s)", self.dataset, count, reason,
                        "; ".join(self.places[reason]))


def file_stats(paths: Sequence[Path]) -> tuple[list[tuple[int, int] | None], list[int]]:
    """``(size, mtime_ns)`` of each path (None when it is not a file), and the missing indices."""
    stats: list[tuple[int, int] | None] = []
    missing = []
    for i, path in enumerate(paths):
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            stats.append(None)
            missing.append(i)
        else:
            stats.append((st.st_size, st.st_mtime_ns))
    return stats, missing


def require_classes(classes: Sequence[str], dataset_classes: Sequence[str], dataset: str) -> None:
    """Fail, naming the class and the dataset's classes, when ``classes`` asks for one it lacks."""
    own = [canonical_emotion(c) for c in dataset_classes]
    absent = [c for c in classes if canonical_emotion(c) not in own]
    if absent:
        raise ValueError(
            f"{dataset} has no class {', '.join(map(repr, absent))}; its classes are {own}. "
            "Choose data.classes among these (or a class_set made for it)")


def require_file(path: Path, what: str, how_to_get: str) -> Path:
    """``path`` when it is a file, else FileNotFoundError naming it, what it is and where to get it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} there. {how_to_get}")
    return path

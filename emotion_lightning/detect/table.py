"""detections.csv: one row per face per frame, flushed frame by frame."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from emotion_lightning.detect.results import FaceEmotion

#: Columns before the one-per-class probability columns.
FIXED_COLUMNS = (
    "source", "frame", "timestamp", "face",
    "x1", "y1", "x2", "y2", "det_prob", "label", "confidence",
)


class DetectionTable:
    """Writes ``path`` with :data:`FIXED_COLUMNS` then one probability column per class.

    Every :meth:`write_frame` is flushed, so a run that stops half-way keeps its rows.
    """

    def __init__(self, path: str | Path, class_names: Sequence[str]) -> None:
        clash = sorted(set(FIXED_COLUMNS) & set(class_names))
        if clash:
            raise ValueError(f"class names {clash} clash with the table's columns {FIXED_COLUMNS}")
        self.path = Path(path)
        self.class_names = list(class_names)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow([*FIXED_COLUMNS, *self.class_names])
        self._file.flush()
        self.rows = 0

    def write_frame(
        self, source: str, frame: int, timestamp: float | None, faces: Sequence[FaceEmotion]
    ) -> None:
        """One row per face; ``timestamp`` is ``None`` for still images (an empty cell)."""
        stamp = "" if timestamp is None else f"{timestamp:.3f}"
        for number, face in enumerate(faces):
            self._writer.writerow([
                source, frame, stamp, number, *(f"{v:.1f}" for v in face.box),
                f"{face.det_prob:.4f}", face.label, f"{face.confidence:.4f}",
                *(f"{face.probabilities[name]:.4f}" for name in self.class_names),
            ])
        self.rows += len(faces)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> DetectionTable:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

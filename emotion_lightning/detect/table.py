"""detections.csv: one row per face per frame, flushed frame by frame."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from emotion_lightning.detect.results import FaceEmotion

#: Columns before the one-per-class probability columns. ``track`` is the face's track id in
#: a video; ``track_label`` its label after smoothing along the track (``label`` without).
FIXED_COLUMNS = (
    "source", "frame", "timestamp", "face", "track",
    "x1", "y1", "x2", "y2", "det_prob", "label", "confidence", "track_label",
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
        self, source: str, frame: int, timestamp: float | None, faces: Sequence[FaceEmotion],
        track_labels: Sequence[str] | None = None,
    ) -> None:
        """One row per face (its raw probabilities); ``timestamp`` is ``None`` for still images
        (an empty cell), as is ``track`` outside videos. ``track_labels`` default to the labels."""
        stamp = "" if timestamp is None else f"{timestamp:.3f}"
        labels = track_labels if track_labels is not None else [f.label for f in faces]
        for number, (face, track_label) in enumerate(zip(faces, labels, strict=True)):
            self._writer.writerow([
                source, frame, stamp, number, "" if face.track is None else face.track,
                *(f"{v:.1f}" for v in face.box), f"{face.det_prob:.4f}", face.label,
                f"{face.confidence:.4f}", track_label,
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

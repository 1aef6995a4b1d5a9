"""The typed result of detecting one face and classifying its emotion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FaceEmotion:
    """A face found in an image and its emotion, in that image's pixel coordinates."""

    box: tuple[float, float, float, float]  # x1 (left), y1 (top), x2 (right), y2 (bottom)
    det_prob: float  # the face detector's probability that this is a face
    probabilities: dict[str, float]  # class name -> probability, in the model's class order
    label: str  # the most probable class
    confidence: float  # its probability
    track: int | None = None  # the face's track id in a video (None for still images)

    @classmethod
    def from_scores(
        cls, box: np.ndarray, det_prob: float, class_names: Sequence[str], probs: np.ndarray,
        track: int | None = None,
    ) -> FaceEmotion:
        """Build a result from a box, its detection probability and the class probabilities."""
        top = int(np.argmax(probs))
        return cls(
            box=tuple(float(v) for v in box[:4]),
            det_prob=float(det_prob),
            probabilities={name: float(p) for name, p in zip(class_names, probs, strict=True)},
            label=class_names[top],
            confidence=float(probs[top]),
            track=track,
        )

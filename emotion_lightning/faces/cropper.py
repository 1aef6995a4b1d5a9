"""FaceCrop: how a detected face is cut out (side, margin, by landmarks or by box), in one place
for ``emotion-detect``, ``emotion-faces build`` and the wild datamodule (``face_crop`` group)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotion_lightning.faces.align import align_face
from emotion_lightning.faces.crop import crop_face
from emotion_lightning.images import FER_SIZE


@dataclass(frozen=True)
class FaceCrop:
    """Cuts a face out of an RGB (or gray) image as a gray uint8 ``size x size`` square.

    Args:
        size: the crop's side (48, like FER2013).
        margin: fraction of the face box added around it (0 frames faces like FER2013).
        align: eyes level and FER framing by the five landmarks (the box crop where they are
            implausible); ``False``: the square around the box.
    """

    size: int = FER_SIZE
    margin: float = 0.0
    align: bool = True

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"face crop size must be at least 8 pixels, got {self.size}")
        if self.margin < 0:
            raise ValueError(f"face crop margin must be >= 0, got {self.margin}")

    def cut(self, image: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, str]:
        """The crop and how it was cut: ``landmarks``, ``box``, or ``box (<why not aligned>)``."""
        if self.align:
            aligned = align_face(image, box, landmarks, self.size, self.margin)
            return aligned.image, aligned.style
        return crop_face(image, box, self.size, self.margin), "box"

"""Cut a face out of a photo the way FER2013 frames its faces: square, gray, small.

FER2013 faces are tight: on 150 FER training images MTCNN's box height is ~1.07x the
frame side (median; quartiles 0.96-1.23), so the default margin of 0 (square of the
box's longer side) gives wild crops that look like FER images.
"""

from __future__ import annotations

import numpy as np

from emotion_lightning.faces.boxes import square_box
from emotion_lightning.images import FER_SIZE, resize_square, to_gray


def crop_square(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Pixels of the square ``box`` (integer-rounded); parts outside the image are black.

    The box is padded at the borders, never shifted, so the face stays centred.
    """
    left, top, right, bottom = (int(round(float(v))) for v in box[:4])
    side = max(1, right - left, bottom - top)
    right, bottom = left + side, top + side
    height, width = image.shape[:2]
    out = np.zeros((side, side, *image.shape[2:]), dtype=image.dtype)
    src_left, src_top = max(left, 0), max(top, 0)
    src_right, src_bottom = min(right, width), min(bottom, height)
    if src_right > src_left and src_bottom > src_top:
        out[src_top - top : src_bottom - top, src_left - left : src_right - left] = image[
            src_top:src_bottom, src_left:src_right
        ]
    return out


def crop_face(
    image: np.ndarray, box: np.ndarray, size: int = FER_SIZE, margin: float = 0.0
) -> np.ndarray:
    """uint8 ``size x size`` ITU-R 601 gray crop of the face ``box`` in an RGB or gray image."""
    return resize_square(to_gray(crop_square(image, square_box(box, margin))), size)

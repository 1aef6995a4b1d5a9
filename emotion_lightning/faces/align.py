"""Landmark-aligned face crops: eyes level, scaled and centred by the eyes and mouth like FER2013.

FER2013's faces are roughly registered; scraped faces are tilted and framed anyhow. The crop
rotates about the eyes so that they are level, scales so that the eye distance plus the
eye-to-mouth height matches FER's, and puts the point halfway between the eyes' and the
mouth's midpoints where FER has it. Landmarks that do not look like a face seen from the front
(MTCNN on profiles, occlusions, false positives) fall back to the plain box crop, with the
reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from emotion_lightning.faces.crop import crop_face
from emotion_lightning.images import FER_SIZE, resize_square, to_gray

#: Median MTCNN landmarks on 259 FER2013 training faces, as fractions of the frame side
#: (``python benchmarks/fer_framing.py --images 300``): the eyes at 0.319/0.695 across and
#: 0.387 down, the mouth's corners' midpoint at 0.511 across and 0.781 down.
FER_EYE_DISTANCE = 0.376
FER_EYE_TO_MOUTH = 0.394
#: Halfway between the eyes' midpoint and the mouth's, centred across (so mirrors agree).
FER_CENTRE = (0.5, 0.584)

#: Plausible landmarks: eyes tilted at most this much, and the eye-to-mouth height within this
#: range of multiples of the eye distance (frontal faces: ~1; profiles: the eyes close up).
MAX_TILT_DEGREES = 45.0
HEIGHT_TO_WIDTH = (0.6, 1.8)


@dataclass(frozen=True)
class AlignedCrop:
    """A gray ``size x size`` face crop and, when it is the plain box crop, why."""

    image: np.ndarray
    fallback: str | None = None  # None: aligned by the landmarks

    @property
    def style(self) -> str:
        """``landmarks``, or ``box (<why the landmarks were not used>)``."""
        return "landmarks" if self.fallback is None else f"box ({self.fallback})"


def implausible(landmarks: np.ndarray, box: np.ndarray) -> str | None:
    """Why MTCNN's five ``landmarks`` (eyes, nose, mouth corners) cannot align the face in
    ``box``, or ``None`` when they can."""
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    left, top, right, bottom = (float(v) for v in box[:4])
    side = max(right - left, bottom - top, 1.0)
    if not np.isfinite(points).all():
        return "landmarks missing"
    slack = 0.15 * side
    if ((points[:, 0] < left - slack) | (points[:, 0] > right + slack)
            | (points[:, 1] < top - slack) | (points[:, 1] > bottom + slack)).any():
        return "landmarks outside the face box"
    eye_l, eye_r = points[0], points[1]
    width = float(np.linalg.norm(eye_r - eye_l))
    if width < 0.1 * side:
        return "eyes too close together"
    tilt = math.degrees(math.atan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0]))
    if abs(tilt) > MAX_TILT_DEGREES:
        return f"eyes tilted {tilt:.0f} degrees"
    height = _eye_to_mouth(points, math.radians(tilt))
    if height <= 0:
        return "mouth not below the eyes"
    ratio = height / width
    if not HEIGHT_TO_WIDTH[0] <= ratio <= HEIGHT_TO_WIDTH[1]:
        return f"eye-to-mouth height {ratio:.2f}x the eye distance (not frontal)"
    return None


def _eye_to_mouth(points: np.ndarray, tilt: float) -> float:
    """Height of the mouth's midpoint below the eyes' midpoint, measured across the eye line."""
    eyes, mouth = points[:2].mean(0), points[3:].mean(0)
    down = np.array([-math.sin(tilt), math.cos(tilt)])  # perpendicular to the eye line
    return float((mouth - eyes) @ down)


def alignment_matrix(landmarks: np.ndarray, size: int, margin: float = 0.0) -> np.ndarray:
    """The 2x3 similarity transform from image pixels to a ``size x size`` FER-framed crop
    (``margin``: fraction of the face added around it, as for the box crop)."""
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    eye_l, eye_r = points[0], points[1]
    tilt = math.atan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0])
    width = float(np.linalg.norm(eye_r - eye_l))
    height = _eye_to_mouth(points, tilt)
    scale = size * (FER_EYE_DISTANCE + FER_EYE_TO_MOUTH) / (width + height) / (1.0 + margin)
    centre = (points[:2].mean(0) + points[3:].mean(0)) / 2
    cos, sin = scale * math.cos(-tilt), scale * math.sin(-tilt)
    rotate = np.array([[cos, -sin], [sin, cos]])
    shift = np.array(FER_CENTRE) * size - rotate @ centre
    return np.hstack([rotate, shift[:, None]])


def align_face(
    image: np.ndarray,
    box: np.ndarray,
    landmarks: np.ndarray,
    size: int = FER_SIZE,
    margin: float = 0.0,
) -> AlignedCrop:
    """The face FER-framed by its landmarks (gray uint8, parts outside the image black), or
    the plain box crop (:func:`~emotion_lightning.faces.crop.crop_face`) with the reason
    when the landmarks are implausible."""
    reason = implausible(landmarks, box)
    if reason is not None:
        return AlignedCrop(crop_face(image, box, size, margin), reason)
    matrix = alignment_matrix(landmarks, size, margin)
    # warp at the source's resolution, then shrink with area averaging (no aliasing)
    native = max(size, int(round(size / max(abs(np.linalg.det(matrix[:, :2])) ** 0.5, 1e-6))))
    matrix = matrix * (native / size)
    gray = to_gray(image)
    warped = cv2.warpAffine(gray, matrix, (native, native), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return AlignedCrop(resize_square(warped, size))

"""Which face of a photo goes into the dataset, or why none does."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotion_lightning.faces.detector import Detections

#: ``exactly_one``: photos with several confident faces are dropped (the recipe);
#: ``largest``: the largest confident face is kept whatever else is in the photo.
POLICIES: tuple[str, ...] = ("exactly_one", "largest")


@dataclass(frozen=True)
class FaceChoice:
    """The decision about one photo: keep the detection ``index`` or drop for ``reason``.

    ``index`` is the face the decision is about (the most probable candidate or the
    largest confident face) and is None only when there was no candidate.
    """

    index: int | None
    reason: str  # "" when kept
    faces: int  # confident faces in the photo

    @property
    def kept(self) -> bool:
        return not self.reason


def choose_face(
    found: Detections, policy: str = "exactly_one", min_prob: float = 0.95, min_face_px: int = 40
) -> FaceChoice:
    """Apply ``policy`` to all MTCNN candidates ``found`` in one photo.

    Reasons, checked in this order: ``no_face`` (no candidate at all), ``low_probability``
    (no candidate reaches ``min_prob``), ``several_faces`` (``exactly_one`` and more than
    one confident face), ``too_small`` (the chosen face's longer side < ``min_face_px``).
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown face policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if len(found) == 0:
        return FaceChoice(None, "no_face", 0)
    confident = np.flatnonzero(found.probs >= min_prob)
    if len(confident) == 0:
        return FaceChoice(int(np.argmax(found.probs)), "low_probability", 0)
    sides = found.sides()
    index = int(confident[np.argmax(sides[confident])])
    if policy == "exactly_one" and len(confident) > 1:
        return FaceChoice(index, "several_faces", len(confident))
    if sides[index] < min_face_px:
        return FaceChoice(index, "too_small", len(confident))
    return FaceChoice(index, "", len(confident))

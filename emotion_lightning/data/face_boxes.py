"""Faces cut from the boxes a label file gives (AffectNet, ExpW, CK+ landmarks), framed as
our own crops are (faces/crop.py: the square of the box's longer side, padded black at the
borders), with boxes that miss the image refused."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emotion_lightning.data.decoded import ImageRows, decoded_images, report_problems
from emotion_lightning.data.label_files import SkipReport, file_stats
from emotion_lightning.faces.crop import crop_face
from emotion_lightning.images import UnreadableImage, load_gray, resize_square

#: A box counts as outside the image when less than this share of its area lies in it.
MIN_INSIDE = 0.5


def box_problem(box: np.ndarray, width: int, height: int, min_inside: float = MIN_INSIDE) -> str:
    """Why ``box`` (left, top, right, bottom) cannot frame a face in a ``width x height``
    image (``""``: it can): an empty box, or one mostly outside the image."""
    left, top, right, bottom = (float(v) for v in box[:4])
    if not (right > left and bottom > top):
        return "empty face box"
    inside = max(0.0, min(right, width) - max(left, 0.0)) * max(0.0, min(bottom, height) - max(top, 0.0))
    if inside < min_inside * (right - left) * (bottom - top):
        return "face box outside the image"
    return ""


def face_from_box(path: Path, box: np.ndarray | None, size: int) -> np.ndarray | str:
    """The ``size x size`` gray face of ``box`` in the image at ``path`` (the whole image when
    ``box`` is None), or why there is none (an unreadable image, a box outside it)."""
    try:
        gray = load_gray(path)
    except UnreadableImage as error:
        return f"unreadable image ({error.reason})"
    if box is None:
        return resize_square(gray, size)
    problem = box_problem(box, gray.shape[1], gray.shape[0])
    return problem or crop_face(gray, np.asarray(box, np.float32), size)


def listed_faces(
    cache_dir: str | Path | None,
    tag: str,
    paths: Sequence[Path],
    boxes: np.ndarray | None,
    size: int,
    places: Sequence[str],
    report: SkipReport,
) -> tuple[ImageRows, np.ndarray]:
    """The faces of the images a label file lists (``boxes[i]`` in ``paths[i]``; whole images
    when ``boxes`` is None), decoded once into the memory-mapped cache (``tag`` names the
    progress bar), and which are usable.

    A listed image that is missing, unreadable, or whose box lies outside it is added to
    ``report`` with its label-file place (``places[i]``, ``file:line``) and marked unusable.
    Each cache chunk's key covers its images' paths, sizes and mtimes, boxes and ``size``.
    """
    stats, missing = file_stats(paths)
    missing_set = set(missing)
    boxes_listed = [None] * len(paths) if boxes is None else np.asarray(boxes).round(2).tolist()
    keys = list(zip(map(str, paths), stats, boxes_listed))

    def decode(i: int) -> np.ndarray | str:
        if i in missing_set:
            return "image file missing"
        return face_from_box(paths[i], None if boxes is None else boxes[i], size)

    images, problem = decoded_images(cache_dir, keys, decode, size, f"decoding {tag}")
    return images, report_problems(problem, places, report)

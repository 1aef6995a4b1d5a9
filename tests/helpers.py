"""Helpers shared by test modules: stand-in face finders, tiny photos, videos and
damaged files the tests write themselves."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from emotion_lightning.faces import Detections, FaceDatasetBuilder


class SquareFinder:
    """A stand-in for MTCNN: every bright square (> 100) on a dark photo is a "face".

    Squares averaging >= 180 are confident (0.99), dimmer ones doubtful (0.6). It records
    the size of every image it is shown.
    """

    min_prob = 0.95
    min_face_size = 20

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def detect_all(self, images):
        self.seen += [image.shape[:2] for image in images]
        return [self._find(image) for image in images]

    def _find(self, image: np.ndarray) -> Detections:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        count, _, stats, _ = cv2.connectedComponentsWithStats((gray > 100).astype(np.uint8))
        boxes, probs = [], []
        for left, top, width, height, area in stats[1:count]:
            if area >= 36:
                boxes.append([left, top, left + width, top + height])
                mean = gray[top : top + height, left : left + width].mean()
                probs.append(0.99 if mean >= 180 else 0.6)
        return Detections(
            np.array(boxes, np.float32).reshape(-1, 4),
            np.array(probs, np.float32),
            np.zeros((len(probs), 5, 2), np.float32),
        )


def photo(seed: int, faces=((60, 40, 80),), size=(240, 320), dim: bool = False) -> np.ndarray:
    """A dark RGB photo with textured bright squares ``(left, top, side)``."""
    rng = np.random.default_rng(seed)
    image = np.zeros((*size, 3), np.uint8)
    for left, top, side in faces:
        grid = rng.integers(0, 256, (12, 12), dtype=np.uint8)
        texture = cv2.resize(grid, (side, side), interpolation=cv2.INTER_CUBIC)
        base, spread = (110, 0.25) if dim else (160, 0.35)
        image[top : top + side, left : left + side] = (base + texture * spread)[:, :, None].astype(
            np.uint8
        )
    return image


def save(path: Path, image: np.ndarray | Image.Image, fmt: str = "PNG", **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    picture.save(path, format=fmt, **options)
    return path


def builder(finder=None, **options) -> FaceDatasetBuilder:
    return FaceDatasetBuilder(finder or SquareFinder(), **({"chunk_size": 4} | options))


class StubFinder:
    """Finds the same boxes in every image; raises on call number ``fail_on_call``."""

    def __init__(self, boxes, fail_on_call: int | None = None) -> None:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.found = Detections(boxes, np.linspace(0.99, 0.96, len(boxes)).astype(np.float32),
                                np.zeros((len(boxes), 5, 2), np.float32))
        self.fail_on_call = fail_on_call
        self.calls = 0

    def detect(self, images):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("detector failed")
        return [self.found for _ in images]


def write_video(path: Path, frames: int, fps: float = 7.0, size=(96, 80)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 10 * i, np.uint8))
    writer.release()
    return path


def video_info(path: Path) -> tuple[int, float, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.read()[0]:
        frames += 1
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    info = (frames, capture.get(cv2.CAP_PROP_FPS), size)
    capture.release()
    return info


def truncated_jpeg(path: Path, seed: int = 0, size: int = 48) -> Path:
    """A JPEG cut to two thirds: cv2 reads it (partly grey), a checked decoder must not."""
    rng = np.random.default_rng(seed)
    picture = cv2.resize(rng.integers(0, 256, (6, 6), np.uint8), (size, size),
                         interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".jpg", picture)[1].tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) is not None, "cv2 reads it partly grey"
    return path


def wild_crops(root: Path, count: int = 12, labels=("happy", "sad")) -> Path:
    """``count`` random 60x60 PNG crops in each ``root/<label>/``."""
    rng = np.random.default_rng(0)
    for folder in labels:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / folder / f"{i}.png"), rng.integers(0, 256, (60, 60), np.uint8))
    return root


def bad_links(folder: Path) -> list[str]:
    """A dangling link, a link loop and a link to ``.`` in ``folder``; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dangling.jpg").symlink_to(folder / "gone.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "here.jpg").symlink_to(".")
    return ["dangling.jpg", "here.jpg", "loop.jpg"]


def make_read_only(folder: Path) -> Path:
    """``folder`` made unwritable: by its mode, or for root (whom modes do not stop) by
    mounting a read-only tmpfs on it; skips when neither is possible. Undo with
    :func:`undo_read_only`."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return folder
    if os.system(f"mount -t tmpfs -o ro,size=1m tmpfs '{folder}' 2>/dev/null") != 0:
        pytest.skip("running as root without mount: cannot make a folder read-only")
    return folder


def undo_read_only(folder: Path) -> None:
    if os.geteuid() != 0:
        folder.chmod(0o755)
    else:
        os.system(f"umount '{folder}' 2>/dev/null")

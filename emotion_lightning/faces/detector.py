"""Batched face detection with facenet-pytorch's MTCNN (weights ship inside its wheel)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from emotion_lightning.images import as_rgb
from emotion_lightning.runtime import resolve_device


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, most probable first, in that image's pixel coordinates."""

    boxes: np.ndarray  # float32 Nx4: left, top, right, bottom
    probs: np.ndarray  # float32 N
    landmarks: np.ndarray  # float32 Nx5x2: eyes, nose, mouth corners as (x, y)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        )

    def __len__(self) -> int:
        return len(self.probs)

    def select(self, keep: np.ndarray) -> Detections:
        """The detections at the indices or boolean mask ``keep``."""
        return Detections(self.boxes[keep], self.probs[keep], self.landmarks[keep])

    def above(self, min_prob: float) -> Detections:
        """Only the detections with probability ``>= min_prob``."""
        return self.select(self.probs >= min_prob)

    def scaled(self, factor: float) -> Detections:
        """The detections with boxes and landmarks multiplied by ``factor``."""
        return Detections(self.boxes * factor, self.probs, self.landmarks * factor)

    def sides(self) -> np.ndarray:
        """The longer side of each box in pixels."""
        return np.maximum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])


class FaceDetector:
    """MTCNN face detector over batches of RGB (or gray) uint8 images.

    Images of equal size are detected together, ``batch_size`` at a time (MTCNN only
    batches equal sizes); results come back in input order. MTCNN itself is loaded on the
    first detection, so a detector in a config costs nothing until it is used.

    Args:
        min_prob: drop detections below this probability; MTCNN's false positives (textures,
            patterns, faces in the background) score up to ~0.9, real faces ~0.99.
        min_face_size: smallest face side in pixels MTCNN searches for.
        batch_size: images per MTCNN call.
        device: ``"auto"`` (the first GPU when there is one), ``"cpu"``, ``"cuda:1"`` ...
        max_side: search faces in a copy downscaled to this longer side (faster on large
            images; boxes and landmarks are mapped back); ``None`` searches at full size.
        thresholds: MTCNN's three stage thresholds.
    """

    def __init__(
        self,
        min_prob: float = 0.95,
        min_face_size: int = 20,
        batch_size: int = 16,
        device: str | torch.device = "cpu",
        max_side: int | None = None,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
    ) -> None:
        if not 0.0 <= min_prob <= 1.0:
            raise ValueError(f"min_prob must be within [0, 1], got {min_prob}")
        if min_face_size < 12:
            raise ValueError(
                f"min_face_size must be at least 12 pixels (MTCNN's cell), got {min_face_size}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if max_side is not None and max_side < max(32, min_face_size):
            raise ValueError(f"max_side must be >= 32 pixels and >= min_face_size, or None; "
                             f"got {max_side}")
        self.min_prob = min_prob
        self.min_face_size = min_face_size
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.max_side = max_side
        self.thresholds = tuple(thresholds)
        self._mtcnn = None

    @property
    def mtcnn(self):
        """facenet-pytorch's MTCNN, loaded on first use."""
        if self._mtcnn is None:
            from facenet_pytorch import MTCNN  # heavy import, only where detection happens

            self._mtcnn = MTCNN(
                min_face_size=self.min_face_size,
                thresholds=list(self.thresholds),
                keep_all=True,
                select_largest=False,
                device=self.device,
            ).eval()
            if self.device.type == "cpu":
                # NHWC weights make MTCNN's convolutions NHWC, and its max-pooling 3x faster
                # on CPU: ~1.65x faster detection, same boxes (benchmarks/detect.py)
                for net in (self._mtcnn.pnet, self._mtcnn.rnet, self._mtcnn.onet):
                    net.to(memory_format=torch.channels_last)
        return self._mtcnn

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Faces with probability ``>= min_prob`` in each image."""
        return [found.above(self.min_prob) for found in self.detect_all(images)]

    def detect_all(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Every MTCNN candidate in each image, whatever its probability."""
        if self.max_side is None:
            return self._detect_all(images)
        factors = [min(1.0, self.max_side / max(image.shape[:2])) for image in images]
        small = [_shrink(image, f) for image, f in zip(images, factors, strict=True)]
        return [found if f == 1.0 else found.scaled(1 / f)
                for found, f in zip(self._detect_all(small), factors, strict=True)]

    def _detect_all(self, images: Sequence[np.ndarray]) -> list[Detections]:
        results: list[Detections] = [Detections.empty()] * len(images)
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            if min(image.shape[:2]) >= self.min_face_size:  # smaller: no pyramid level fits
                by_size[image.shape[:2]].append(index)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                batch = np.stack([as_rgb(images[i]) for i in chunk])
                for index, found in zip(chunk, self._detect_batch(batch), strict=True):
                    results[index] = found
        return results

    def _detect_batch(self, batch: np.ndarray) -> list[Detections]:
        boxes, probs, points = self.mtcnn.detect(batch, landmarks=True)
        found = []
        for image_boxes, image_probs, image_points in zip(boxes, probs, points, strict=True):
            if image_boxes is None:
                found.append(Detections.empty())
                continue
            order = np.argsort(-np.asarray(image_probs, dtype=np.float32), kind="stable")
            found.append(
                Detections(
                    np.asarray(image_boxes, dtype=np.float32)[order],
                    np.asarray(image_probs, dtype=np.float32)[order],
                    np.asarray(image_points, dtype=np.float32)[order],
                )
            )
        return found



def _shrink(image: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:
        return image
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

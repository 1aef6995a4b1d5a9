"""Procedurally drawn gray faces: a built-in dataset that needs no download.

Each expression is a distinct configuration of brows, eyes and mouth drawn with random
pose, scale, proportions, lighting, blur and noise, so a model has to learn the geometry
of the features rather than a fixed template. Deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from emotion_lightning.constants import DEFAULT_CLASSES, FER_EMOTIONS
from emotion_lightning.data.base import SPLITS, STAGE_SPLITS, GrayImageDataModule, LoaderOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

SYNTHETIC_CLASSES = FER_EMOTIONS  # it draws each of FER2013's seven expressions
CANVAS = 128


def _arc(img, center, half_width, bend, thickness, color, tilt=0.0) -> None:
    """A parabola through ``center``: ``bend`` > 0 curves up at the ends (a smile)."""
    xs = np.linspace(-half_width, half_width, 24)
    ys = -bend * (xs / half_width) ** 2 + tilt * xs / half_width
    pts = np.stack([center[0] + xs, center[1] + ys], axis=1)
    cv2.polylines(img, [np.round(pts * 16).astype(np.int32)], False, color, thickness,
                  cv2.LINE_AA, shift=4)


def _line(img, p, q, thickness, color) -> None:
    a = (int(round(p[0] * 16)), int(round(p[1] * 16)))
    b = (int(round(q[0] * 16)), int(round(q[1] * 16)))
    cv2.line(img, a, b, color, thickness, cv2.LINE_AA, shift=4)


def _ellipse(img, center, axes, color, thickness=-1) -> None:
    c = (int(round(center[0] * 16)), int(round(center[1] * 16)))
    ax = (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16))))
    cv2.ellipse(img, c, ax, 0, 0, 360, color, thickness, cv2.LINE_AA, shift=4)


def draw_face(expression: str, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """One ``size x size`` uint8 face showing ``expression`` (one of SYNTHETIC_CLASSES)."""
    if expression not in SYNTHETIC_CLASSES:
        raise ValueError(f"unknown expression {expression!r}; known: {SYNTHETIC_CLASSES}")
    u = rng.uniform
    bg = u(20, 235)
    skin = float(np.clip(bg + rng.choice([-1, 1]) * u(40, 110), 40, 230))
    ink = float(np.clip(skin - u(60, 120), 0, 255)) if skin > 110 else float(skin + u(60, 110))
    img = np.full((CANVAS, CANVAS), bg, np.float32)
    cx, cy = CANVAS / 2, CANVAS / 2
    fw, fh = u(38, 50), u(48, 60)
    _ellipse(img, (cx, cy), (fw, fh), skin)

    eye_dy, eye_dx = -fh * u(0.15, 0.28), fw * u(0.33, 0.45)
    eye_r = fw * u(0.09, 0.13)
    brow_gap = eye_r * u(1.8, 2.4)
    mouth_y, mouth_w = cy + fh * u(0.42, 0.55), fw * u(0.35, 0.55)
    t = int(round(u(2.5, 4.0)))

    # expression parameters: eye openness, brow raise and inner-end slope, mouth shape
    openness, brow_raise, brow_slope = 1.0, 0.0, 0.0
    if expression == "angry":
        openness, brow_slope, brow_raise = u(0.45, 0.7), u(0.45, 0.75), -u(0.1, 0.3)
    elif expression == "disgust":
        openness, brow_slope, brow_raise = u(0.35, 0.6), u(0.1, 0.3), -u(0.2, 0.4)
    elif expression == "fear":
        openness, brow_slope, brow_raise = u(1.3, 1.6), -u(0.35, 0.6), u(0.5, 0.8)
    elif expression == "happy":
        openness, brow_raise = u(0.5, 0.8), u(0.0, 0.2)
    elif expression == "sad":
        openness, brow_slope, brow_raise = u(0.7, 0.9), -u(0.45, 0.75), u(0.0, 0.2)
    elif expression == "surprise":
        openness, brow_raise = u(1.35, 1.7), u(0.7, 1.1)
    else:  # neutral
        openness = u(0.85, 1.05)

    for side in (-1, 1):
        ex, ey = cx + side * eye_dx, cy + eye_dy
        _ellipse(img, (ex, ey), (eye_r * 1.3, eye_r * openness), ink)
        by = ey - brow_gap - brow_raise * eye_r * 1.5
        inner, outer = ex - side * eye_r * 1.8, ex + side * eye_r * 1.8
        slope = brow_slope * eye_r * 1.6
        _line(img, (inner, by + slope), (outer, by - slope), t, ink)

    if expression == "happy":
        _arc(img, (cx, mouth_y), mouth_w, u(9, 15), t, ink)
        if rng.random() < 0.5:
            _ellipse(img, (cx, mouth_y - u(5, 8)), (mouth_w * 0.6, u(3, 5)), ink)
    elif expression == "sad":
        _arc(img, (cx, mouth_y), mouth_w * 0.85, -u(8, 13), t, ink)
    elif expression == "surprise":
        _ellipse(img, (cx, mouth_y), (mouth_w * u(0.3, 0.45), u(8, 13)), ink)
    elif expression == "fear":
        _ellipse(img, (cx, mouth_y), (mouth_w * u(0.7, 0.9), u(3, 6)), ink)
    elif expression == "angry":
        _line(img, (cx - mouth_w * 0.8, mouth_y), (cx + mouth_w * 0.8, mouth_y), t + 1, ink)
    elif expression == "disgust":
        side = rng.choice([-1, 1])
        _arc(img, (cx, mouth_y), mouth_w * 0.7, -u(2, 5), t, ink, tilt=side * u(6, 10))
        for k in (-1, 1):  # wrinkled nose
            _line(img, (cx + k * 5, cy + fh * 0.08), (cx + k * 9, cy + fh * 0.2), max(1, t - 1), ink)
    else:
        _line(img, (cx - mouth_w * 0.6, mouth_y), (cx + mouth_w * 0.6, mouth_y), t, ink)

    # lighting gradient, pose, blur and noise
    gx, gy = np.meshgrid(np.linspace(-1, 1, CANVAS), np.linspace(-1, 1, CANVAS))
    angle = u(0, 2 * np.pi)
    img += u(0, 45) * (np.cos(angle) * gx + np.sin(angle) * gy)
    scale = u(0.75, 1.05)
    matrix = cv2.getRotationMatrix2D((cx, cy), u(-18, 18), scale)
    matrix[:, 2] += u(-10, 10, size=2)
    img = cv2.warpAffine(img, matrix, (CANVAS, CANVAS), borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    img = cv2.GaussianBlur(img, (0, 0), u(0.3, 1.6))
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    img += rng.normal(0, u(2, 14), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_synthetic(
    classes: Sequence[str], count: int, seed: int, size: int = 48
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` balanced faces (labels cycle through ``classes``), deterministic from ``seed``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % len(classes)
    rng.shuffle(labels)
    images = np.stack([draw_face(classes[k], rng, size) for k in labels]) if count else \
        np.empty((0, size, size), np.uint8)
    return images, labels


class SyntheticDataModule(GrayImageDataModule):
    """Procedural faces for any subset of the seven FER expressions; no files needed.

    Train, val and test are drawn from independent seeds derived from ``seed``; ``native_size``
    is the side they are drawn at. ``loader``: see :class:`GrayImageDataModule`.
    """

    #: The expressions it can draw.
    DATASET_CLASSES = SYNTHETIC_CLASSES

    def __init__(
        self,
        classes: Sequence[str] = DEFAULT_CLASSES,
        num_train: int = 3000,
        num_val: int = 500,
        num_test: int = 500,
        native_size: int = 48,
        seed: int = 42,
        **loader: Unpack[LoaderOptions],
    ) -> None:
        super().__init__(classes, **loader)
        unknown = [c for c in self.class_names if c not in SYNTHETIC_CLASSES]
        if unknown:
            raise ValueError(f"no synthetic drawing for {unknown}; known: {SYNTHETIC_CLASSES}")
        self.counts = {"train": num_train, "val": num_val, "test": num_test}
        self.native_size = native_size
        self.seed = seed

    def load_splits(self, stage: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        wanted = STAGE_SPLITS.get(stage or "", SPLITS)
        return {
            split: make_synthetic(self.class_names, self.counts[split],
                                  self.seed * 1000 + k, self.native_size)
            for k, split in enumerate(self.counts)
            if split in wanted
        }

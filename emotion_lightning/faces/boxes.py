"""Box arithmetic in pixel coordinates: ``(left, top, right, bottom)`` float arrays."""

from __future__ import annotations

import numpy as np


def square_box(box: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """The square around ``box``'s centre whose side is its longer side times ``1 + margin``."""
    left, top, right, bottom = (float(v) for v in box[:4])
    side = max(right - left, bottom - top) * (1.0 + margin)
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], dtype=np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (Nx4) with every box in ``b`` (Mx4): NxM."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match_pairs(a: np.ndarray, b: np.ndarray, min_iou: float = 0.5) -> list[tuple[int, int]]:
    """Greedy one-to-one matching by highest IoU (``>= min_iou``): pairs ``(i, j)`` of
    ``a[i]`` and ``b[j]``."""
    iou = box_iou(a, b)
    pairs = []
    while iou.size and iou.max() >= min_iou:
        row, col = np.unravel_index(np.argmax(iou), iou.shape)
        iou[row, :] = -1.0
        iou[:, col] = -1.0
        pairs.append((int(row), int(col)))
    return pairs


def match_boxes(
    predicted: np.ndarray, truth: np.ndarray, min_iou: float = 0.5
) -> tuple[int, int, int]:
    """Greedy one-to-one matching by IoU: ``(true positives, false positives, missed)``."""
    matched = len(match_pairs(predicted, truth, min_iou))
    predicted_count, true_count = len(np.reshape(predicted, (-1, 4))), len(np.reshape(truth, (-1, 4)))
    return matched, predicted_count - matched, true_count - matched

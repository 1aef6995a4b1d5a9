"""Small copies of the public expression datasets in their official layouts (real file names,
real label-file formats), written by the tests. Each image's brightness encodes its label
(``label_shade``), so a test can tell a face read under the wrong label."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def label_shade(label: int) -> int:
    """The mean gray value of a fixture face of dataset label ``label``."""
    return 30 + 20 * int(label)


def face(label: int, rng: np.random.Generator, size: int = 100) -> np.ndarray:
    """A ``size x size`` gray image around ``label_shade(label)`` with a little noise (no two equal)."""
    noise = rng.integers(-6, 7, (size, size))
    return np.clip(label_shade(label) + noise, 0, 255).astype(np.uint8)


def shade_of(image: np.ndarray) -> float:
    return float(np.asarray(image, np.float64).mean())


def write_rafdb(root: Path, per_label: int = 6, seed: int = 0) -> Path:
    """RAF-DB basic: ``EmoLabel/list_patition_label.txt`` and ``Image/aligned/*_aligned.jpg``;
    ``per_label`` train and ``per_label // 2`` test images of each label 1-7."""
    rng = np.random.default_rng(seed)
    (root / "EmoLabel").mkdir(parents=True)
    aligned = root / "Image" / "aligned"
    aligned.mkdir(parents=True)
    lines, counters = [], {"train": 0, "test": 0}
    for label in range(1, 8):
        for split, count in (("train", per_label), ("test", per_label // 2)):
            for _ in range(count):
                counters[split] += 1
                name = f"{split}_{counters[split]:05d}"
                cv2.imwrite(str(aligned / f"{name}_aligned.jpg"), face(label, rng))
                lines.append(f"{name}.jpg {label}")
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root

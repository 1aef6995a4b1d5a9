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


#: Rows of the FER+ fixture that the FER+ protocol drops, by what is odd about their votes.
FERPLUS_ODD_VOTES = {
    "tie": [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],
    "unknown": [0, 3, 0, 0, 0, 0, 0, 0, 7, 0],
    "not_a_face": [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
}


def ferplus_votes(label: int) -> list[int]:
    """Ten votes with a clear majority (6) for FER+ column ``label``, 3 for the next emotion."""
    votes = [0] * 10
    votes[label], votes[(label + 1) % 8], votes[8] = 6, 3, 1
    return votes


def write_ferplus(root: Path, seed: int = 0) -> Path:
    """FER+: ``fer2013new.csv`` (ten votes per row) and the matching ``fer2013.csv`` (48x48
    pixels, row i = row i) in ``root``. Each of the eight emotions has 4 Training, 2
    PublicTest and 2 PrivateTest rows with a clear majority (its faces shaded by the FER+
    column index); Training also holds one row of each of FERPLUS_ODD_VOTES (shade 250)."""
    import csv

    rng = np.random.default_rng(seed)
    rows = [(usage, ferplus_votes(label), label_shade(label))
            for label in range(8)
            for usage in ["Training"] * 4 + ["PublicTest"] * 2 + ["PrivateTest"] * 2]
    rows += [("Training", votes, 250) for votes in FERPLUS_ODD_VOTES.values()]
    root.mkdir(parents=True, exist_ok=True)
    with (root / "fer2013.csv").open("w", newline="") as f, \
            (root / "fer2013new.csv").open("w", newline="") as g:
        pixels, votes_out = csv.writer(f), csv.writer(g)
        pixels.writerow(["emotion", "pixels", "Usage"])
        votes_out.writerow(["Usage", "Image name", "neutral", "happiness", "surprise", "sadness",
                            "anger", "disgust", "fear", "contempt", "unknown", "NF"])
        for i, (usage, votes, shade) in enumerate(rows):
            image = np.clip(shade + rng.integers(-6, 7, (48, 48)), 0, 255)
            pixels.writerow([0, " ".join(map(str, image.ravel())), usage])
            votes_out.writerow([usage, f"fer{i:07d}.png", *votes])
    return root

"""Where FER2013 puts the eyes, nose and mouth: MTCNN landmarks on FER training faces.

    python benchmarks/fer_framing.py [--images 300] [--data ../shared/data/fer2013] [--out PATH]

FER2013's faces are roughly registered. Each face (48 px) is padded by half its side with
black, upscaled 4x (MTCNN misses faces that fill the frame) and searched; the landmarks of
faces found with probability >= 0.95 are mapped back to fractions of the 48-px frame. The
medians are the template of ``emotion_lightning.faces.align`` (``FER_LANDMARKS``). Prints
them and writes JSON (default ``benchmarks/results/fer_framing.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np

from emotion_lightning.faces import FaceDetector
from emotion_lightning.images import load_gray
from emotion_lightning.records import write_json
from emotion_lightning.runtime import machine_record

REPO = Path(__file__).resolve().parents[1]
NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def training_faces(root: Path, count: int) -> list[Path]:
    """Every ``len/count``-th Training image of the manifest (all emotions, fixed order)."""
    with (root / "manifest.csv").open(newline="") as handle:
        paths = [root / row["path"] for row in csv.DictReader(handle) if row["usage"] == "Training"]
    if not paths:
        raise FileNotFoundError(f"no Training rows in {root / 'manifest.csv'}; pass --data")
    return paths[:: max(1, len(paths) // count)][:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--out", type=Path,
                        default=REPO / "benchmarks" / "results" / "fer_framing.json")
    args = parser.parse_args()

    detector = FaceDetector(min_prob=0.95, min_face_size=40, batch_size=32)
    pad, zoom = 24, 4
    images = []
    for path in training_faces(args.data, args.images):
        gray = cv2.copyMakeBorder(load_gray(path), pad, pad, pad, pad, cv2.BORDER_CONSTANT, 0)
        images.append(cv2.resize(gray, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC))
    points, box_sides = [], []
    for found in detector.detect(images):
        if len(found) == 1:
            points.append((found.landmarks[0] / zoom - pad) / 48.0)
            box_sides.append(float(found.sides()[0]) / zoom / 48.0)
    if not points:
        raise RuntimeError("MTCNN found no single face in the sampled FER images")
    median = np.median(np.stack(points), axis=0)
    result = {
        "images": len(images),
        "faces": len(points),
        "landmarks": {name: [round(float(v), 4) for v in xy] for name, xy in zip(NAMES, median)},
        "box_side": round(float(np.median(box_sides)), 4),
        **machine_record(),
    }
    print(json.dumps(result, indent=2))
    write_json(result, args.out)


if __name__ == "__main__":
    main()

"""Face detection throughput: batched vs one-by-one MTCNN on the wild photos.

    python benchmarks/faces.py [--images 64] [--batch-size 16] [--device cpu] [--out PATH]

Prints images/s and faces/s for both modes and writes them as JSON (default
``benchmarks/results/faces.json``). Needs ``../shared/data/wild`` (or ``--data``).
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import chain, zip_longest
from pathlib import Path

import torch

from emotion_lightning.constants import DEFAULT_CLASSES
from emotion_lightning.faces import FaceDetector
from emotion_lightning.images import load_image
from emotion_lightning.records import write_json
from emotion_lightning.runtime import machine_record

REPO = Path(__file__).resolve().parents[1]


def pick_photos(root: Path, count: int) -> list[Path]:
    """``count`` photos taken in turn from each class folder (sorted), so every class is in."""
    folders = [sorted((root / label).glob("*.jpg")) for label in DEFAULT_CLASSES]
    if not any(folders):
        raise FileNotFoundError(f"no <class>/*.jpg under {root}; pass --data")
    interleaved = [p for p in chain.from_iterable(zip_longest(*folders)) if p is not None]
    return interleaved[:count]


def timed(run) -> tuple[float, int]:
    """Seconds taken by ``run()`` and the faces it returned."""
    start = time.perf_counter()
    found = run()
    return time.perf_counter() - start, sum(len(d) for d in found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "wild")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "faces.json")
    args = parser.parse_args()

    images = [load_image(p).rgb for p in pick_photos(args.data, args.images)]
    detector = FaceDetector(batch_size=args.batch_size, device=args.device)
    detector.detect(images[: args.batch_size])  # warm-up: first calls pay one-off costs

    one_s, one_faces = timed(lambda: [detector.detect([image])[0] for image in images])
    batch_s, batch_faces = timed(lambda: detector.detect(images))
    result = {
        "device": str(detector.device),
        "device_name": torch.cuda.get_device_name(detector.device)
        if detector.device.type == "cuda" else None,
        **machine_record(),
        "torch_threads": torch.get_num_threads(),
        "images": len(images),
        "distinct_sizes": len({i.shape for i in images}),  # batches hold equal sizes only
        "batch_size": args.batch_size,
        "one_by_one": {
            "seconds": round(one_s, 3),
            "images_per_s": round(len(images) / one_s, 2),
            "faces_per_s": round(one_faces / one_s, 2),
            "faces": one_faces,
        },
        "batched": {
            "seconds": round(batch_s, 3),
            "images_per_s": round(len(images) / batch_s, 2),
            "faces_per_s": round(batch_faces / batch_s, 2),
            "faces": batch_faces,
        },
        "speedup": round(one_s / batch_s, 2),
    }
    print(json.dumps(result, indent=2))
    write_json(result, args.out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

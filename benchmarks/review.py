"""Model-assisted review: how many planted wrong labels land at the top of the ranking.

    python benchmarks/review.py --ckpt STAGE1.ckpt [--data ../shared/data/wild] [--flip 0.05]

Copies a labelled crop set (``<label>/<image>`` folders), moves a seeded random ``--flip``
share of its images into another label's folder (a wrong label), runs the assisted review
(``emotion-faces review out_dir=COPY ckpt_path=CKPT``) and reports the share of the moved
images within the first 10% of ``review/ranking.csv`` (a random order finds 10%), the
shares at other depths, and the time taken. Prints and writes JSON (default
``benchmarks/results/review.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import torch

from emotion_lightning.faces.class_folders import list_class_folders
from emotion_lightning.faces.review import REVIEW_DIR, write_review_pages
from emotion_lightning.faces.suspicion import RANKING_NAME
from emotion_lightning.models.loading import load_classifier
from emotion_lightning.records import write_json
from emotion_lightning.runtime import machine_record

REPO = Path(__file__).resolve().parents[1]
DEPTHS = (0.05, 0.1, 0.2, 0.3)


def plant_flips(source: Path, copy: Path, fraction: float, seed: int) -> set[str]:
    """Copy ``source``'s class folders to ``copy`` with a ``fraction`` of the images (seeded)
    moved to another, random label's folder; return the moved images' new relative paths."""
    entries = list_class_folders(source)
    labels = sorted({label for _, label in entries})
    if len(labels) < 2:
        raise ValueError(f"{source} has fewer than two labels: nothing to flip to")
    rng = random.Random(seed)
    flipped = set(rng.sample(range(len(entries)), round(fraction * len(entries))))
    moved = set()
    for i, (rel, label) in enumerate(entries):
        name = Path(rel).name
        if i in flipped:
            label = rng.choice([other for other in labels if other != label])
            name = f"flipped_{i}_{name}"  # never collides with the new folder's own files
        target = copy / label / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)
        if i in flipped:
            moved.add(f"{label}/{name}")
    return moved


def found_at(ranking: list[str], planted: set[str], depth: float) -> float:
    """Share of the ``planted`` files within the first ``depth`` of ``ranking``."""
    top = ranking[: max(1, round(depth * len(ranking)))]
    return len(planted.intersection(top)) / max(1, len(planted))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="classifier checkpoint (e.g. stage 1's)")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "wild")
    parser.add_argument("--flip", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "review.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="review-bench-") as work:
        copy = Path(work)
        planted = plant_flips(args.data, copy, args.flip, args.seed)
        start = time.perf_counter()
        classifier = load_classifier(args.ckpt, args.device)
        write_review_pages(copy, classifier)
        seconds = time.perf_counter() - start
        with (copy / REVIEW_DIR / RANKING_NAME).open(newline="") as handle:
            ranking = [row["file"] for row in csv.DictReader(handle)]
    result = {
        "data": str(args.data),
        "images": len(ranking),
        "flipped": len(planted),
        "flip_fraction": args.flip,
        "seed": args.seed,
        "found_in_first_10_percent": found_at(ranking, planted, 0.1),
        "found_at_depth": {f"{d:.0%}": round(found_at(ranking, planted, d), 4) for d in DEPTHS},
        "random_order_expectation": 0.1,
        "review_seconds": round(seconds, 1),
        "checkpoint": args.ckpt,
        "test_time_views": {"flip": classifier.hparams.test_time_flip,
                            "shift": classifier.hparams.test_time_shift},
        "device": args.device,
        **machine_record(),
    }
    print(json.dumps(result, indent=2))
    write_json(result, args.out)


if __name__ == "__main__":
    main()

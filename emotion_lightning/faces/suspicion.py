"""How likely each crop's label is wrong, from a classifier's probabilities.

A crop's **suspicion** is the classifier's margin against its label: the probability of the
most likely other class minus the probability of the labelled class (in [-1, 1]). Above 0
the model prefers another class to the label; ranked from the highest, the wrong labels come
first. Scores should come from a model that has not been trained on the crops (the stage-1
FER model for a fresh scrape), so that it has not learnt their labels.

Measured against confident learning's per-class thresholds (each class's probability divided
by the model's mean probability of that class over the crops labelled with it): on the wild
faces with 5% of the labels flipped, the stage-1 model puts 83% of the flips in the first 10%
of the margin ranking but 42% with the thresholds, because it almost never predicts disgust
(threshold 0.04), so any disgust probability looks large (``benchmarks/review.py``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RANKING_NAME = "ranking.csv"
RANKING_COLUMNS = ("file", "label", "predicted", "confidence", "suspicion")


def label_suspicion(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The suspicion of every crop (``probs``: N x classes, ``labels``: N class indices)."""
    probs, labels = np.array(probs, np.float64), np.asarray(labels, np.int64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"need N x classes probabilities and N labels, got {probs.shape} and "
                         f"{labels.shape}")
    if len(labels) == 0:
        return np.zeros(0)
    rows = np.arange(len(labels))
    own = probs[rows, labels].copy()
    probs[rows, labels] = -np.inf
    return probs.max(axis=1) - own


@dataclass(frozen=True)
class Scored:
    """One crop's review score."""

    file: str  # relative to the dataset folder, as in exclude.txt
    label: str
    predicted: str
    confidence: float  # the model's probability of ``predicted``
    suspicion: float


def score_crops(
    files: Sequence[str], labels: Sequence[str], probs: np.ndarray, class_names: Sequence[str]
) -> list[Scored]:
    """Every crop scored, most suspicious first. Labels the model does not know are left out
    (the caller says so)."""
    known = [i for i, label in enumerate(labels) if label in class_names]
    index = np.asarray([class_names.index(labels[i]) for i in known], np.int64)
    probs = np.asarray(probs, np.float64)[known]
    suspicion = label_suspicion(probs, index)
    scored = [
        Scored(files[i], labels[i], class_names[int(p.argmax())], float(p.max()), float(s))
        for i, p, s in zip(known, probs, suspicion, strict=True)
    ]
    return sorted(scored, key=lambda s: (-s.suspicion, s.file))


def write_ranking(path: str | Path, scored: Sequence[Scored]) -> Path:
    """``ranking.csv`` (``file,label,predicted,confidence,suspicion``), in ``scored``'s order."""
    path = Path(path)
    partial = path.with_name(path.name + ".tmp")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(RANKING_COLUMNS)
        for s in scored:
            writer.writerow([s.file, s.label, s.predicted, f"{s.confidence:.4f}",
                             f"{s.suspicion:.4f}"])
    os.replace(partial, path)
    return path

"""Turning confusion matrices and per-class scores into files, plots and dicts."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def per_class_scores(confusion: np.ndarray, class_names: Sequence[str]) -> dict[str, dict]:
    """Precision, recall, F1 and support per class from a ``[true, pred]`` confusion matrix."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
    }


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str], title: str = ""):
    """A matplotlib figure of counts with row-normalised colours (no pyplot, no backend change)."""
    from matplotlib.figure import Figure

    confusion = np.asarray(confusion)
    rows = confusion.sum(axis=1, keepdims=True)
    share = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    n = len(class_names)
    fig = Figure(figsize=(1.2 * n + 2, 1.1 * n + 1.5))
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            colour = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(confusion[i, j])}\n{share[i, j]:.0%}", ha="center",
                    va="center", color=colour, fontsize=8)
    fig.tight_layout()
    return fig


def save_confusion(
    confusion: np.ndarray, class_names: Sequence[str], stem: str | Path, title: str = ""
) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.png``; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = stem.with_suffix(".csv"), stem.with_suffix(".png")
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true\\pred", *class_names])
        for name, row in zip(class_names, np.asarray(confusion)):
            writer.writerow([name, *[int(v) for v in row]])
    fig = confusion_figure(confusion, class_names, title)
    fig.savefig(png_path, dpi=120)
    return csv_path, png_path

"""Scoring trained models on dataset splits, one at a time or across datasets.

:func:`score` runs one model on one datamodule split; :func:`restrict_classes` lets a model
be scored on a dataset that knows only some of its classes (the others' probabilities are
dropped and the rest renormalised); :func:`write_cross_table` writes the model x dataset
table (markdown, CSV) and figure that papers print by hand.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch

from emotion_lightning.constants import class_positions
from emotion_lightning.models.ensemble import ClassifierEnsemble
from emotion_lightning.models.reporting import per_class_scores
from emotion_lightning.models.scoring import ClassScoring

EVAL_SPLITS = ("test", "val")
#: The columns of a cross-dataset table, per dataset.
CROSS_METRICS = ("acc", "balanced_acc", "macro_f1")


class ClassSubset(ClassScoring):
    """``model`` restricted to ``class_names`` (a subset of its classes, in its order): the
    probabilities of the other classes are dropped and the rest renormalised. Its prior
    correction is the model's on the kept classes (the same ``prior_tau``; the training prior
    of the kept classes, renormalised), so choosing a tau on validation works as for the
    model itself."""

    def __init__(self, model: ClassScoring, class_names: Sequence[str]) -> None:
        super().__init__()
        keep = class_positions(class_names, model.class_names, "class_names", "the model", 2)
        self.model = model
        self.save_hyperparameters({"class_names": list(class_names),
                                   "image_size": int(model.hparams.image_size),
                                   "prior_tau": model.prior_tau}, logger=False)
        self.register_buffer("keep", torch.tensor(keep), persistent=False)
        self.init_scoring(len(class_names))
        self.log_prior.copy_(torch.log_softmax(model.log_prior[self.keep].float(), dim=0))
        self.prior_recorded = getattr(model, "prior_recorded", True)

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams.class_names)

    def predict_proba(self, x: torch.Tensor, shifts: bool = True,
                      corrected: bool = True) -> torch.Tensor:
        """The model's uncorrected probabilities of the kept classes, renormalised, then
        prior-corrected with ``prior_tau`` unless ``corrected=False``."""
        probs = self.model.predict_proba(x, shifts, corrected=False)[:, self.keep]
        probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return self.corrected(probs) if corrected else probs


def restrict_classes(model: ClassScoring, classes: Sequence[str]) -> ClassScoring:
    """``model`` itself when ``classes`` are all its classes in its order, else a
    :class:`ClassSubset` of the classes it shares with ``classes`` (in the model's order)."""
    shared = [c for c in model.class_names if c in set(classes)]
    return model if shared == model.class_names else ClassSubset(model, shared)


def data_image_size(model: ClassScoring, native_size: int | None = None) -> int:
    """The side a dataset's images are prepared at for ``model``: its ``image_size``, except
    that an ensemble reads a dataset whose images all share a smaller ``native_size`` (a
    datamodule's ``NATIVE_SIZE``: FER's 48 px) at that side, and each member resizes them as its
    training data was made, instead of shrinking an enlarged copy."""
    size = int(model.hparams.image_size)
    inner = model.model if isinstance(model, ClassSubset) else model
    if isinstance(inner, ClassifierEnsemble) and native_size is not None and native_size < size:
        return int(native_size)
    return size


def score(model: ClassScoring, datamodule: L.LightningDataModule, trainer: L.Trainer,
          split: str = "test") -> dict:
    """Accuracy, balanced accuracy, macro F1, loss, per-class scores and the confusion matrix
    of ``model`` on ``datamodule``'s ``split`` (``test`` or ``val``)."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    run = trainer.test if split == "test" else trainer.validate
    (logged,) = run(model, datamodule=datamodule, verbose=False)
    matrix = model.confusion_matrix(split)
    prefix = f"{split}/"
    return {
        "split": split,
        "acc": logged[prefix + "acc"],
        "balanced_acc": logged[prefix + "balanced_acc"],
        "macro_f1": logged[prefix + "macro_f1"],
        "loss": logged[prefix + "loss"],
        "num_samples": int(sum(map(sum, matrix))),
        "classes": model.class_names,
        "per_class": per_class_scores(matrix, model.class_names),
        "confusion_matrix": {"classes": model.class_names, "matrix": matrix},
    }


def write_cross_table(results: dict[str, dict[str, dict]], out_dir: str | Path,
                      title: str = "") -> dict[str, Path]:
    """``results[model][dataset]`` (:func:`score` dicts) as ``cross_dataset.md``, ``.csv``
    and ``.png`` (balanced accuracy per model and dataset) in ``out_dir``; their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets = list(dict.fromkeys(d for row in results.values() for d in row))
    out = {"md": out_dir / "cross_dataset.md", "csv": out_dir / "cross_dataset.csv",
           "png": out_dir / "cross_dataset.png"}
    with out["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "dataset", *CROSS_METRICS, "num_samples", "classes"])
        for name, row in results.items():
            for dataset, r in row.items():
                writer.writerow([name, dataset, *[f"{r[m]:.4f}" for m in CROSS_METRICS],
                                 r["num_samples"], " ".join(r["classes"])])
    header = ["model", *[f"{d} {m}" for d in datasets for m in ("acc", "bal. acc", "macro F1")]]
    lines = [f"{title}\n" if title else "", "| " + " | ".join(header) + " |",
             "|---" * len(header) + "|"]
    for name, row in results.items():
        cells = [f"{row[d][m]:.3f}" if d in row else "-" for d in datasets for m in CROSS_METRICS]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    notes = [f"- {d}: {n} faces, classes {' '.join(c)}" for d, (n, c) in
             {d: (r["num_samples"], r["classes"]) for row in results.values()
              for d, r in row.items()}.items()]
    out["md"].write_text("\n".join(lines).lstrip("\n") + "\n\n" + "\n".join(notes) + "\n")
    _plot(results, datasets, out["png"])
    return out


def _plot(results: dict[str, dict[str, dict]], datasets: list[str], path: Path) -> None:
    from matplotlib.figure import Figure

    names = list(results)
    fig = Figure(figsize=(1.6 + 1.3 * len(datasets) * max(1, len(names)) / 2, 3.4))
    ax = fig.subplots()
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        xs = np.arange(len(datasets)) + k * width
        ys = [results[name][d]["balanced_acc"] if d in results[name] else np.nan for d in datasets]
        ax.bar(xs, ys, width, label=name)
    ax.set_xticks(np.arange(len(datasets)) + width * (len(names) - 1) / 2, datasets)
    ax.set_ylim(0, 1)
    ax.set_ylabel("balanced accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)

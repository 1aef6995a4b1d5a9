"""ClassScoring: validation, test and prediction of any model that gives class probabilities.

Shared by a single classifier and an ensemble of them: one torchmetrics instance per stage
(accuracy, balanced accuracy, macro F1, mean loss), a confusion matrix per stage with
per-class precision/recall/F1 logged from it, the same scores per dataset when a datamodule
validates on several (``dataset_names``: ``val/<name>/acc``...), and face-crop prediction. Writing the matrices to files
and loggers is :class:`~emotion_lightning.callbacks.ClassificationReport`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import ConfusionMatrix, MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from emotion_lightning.data.presets import normalize_batch
from emotion_lightning.models.prior import correct_prior
from emotion_lightning.models.reporting import per_class_scores


def stage_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, balanced accuracy (macro recall) and macro F1."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "balanced_acc": MulticlassAccuracy(num_classes, average="macro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
        },
        compute_groups=False,  # each member is logged, computed and reset on its own
    )


def hard_labels(y: torch.Tensor) -> torch.Tensor:
    """Integer labels of a batch's targets: ``y`` itself, or the most likely class of each
    row of class-probability targets ``[N, C]`` (soft labels)."""
    return y.argmax(dim=1) if y.is_floating_point() else y


class ClassScoring(L.LightningModule):
    """Scores ``predict_proba`` (a subclass's) on the ``val`` and ``test`` stages.

    Subclasses call :meth:`init_scoring` in ``__init__`` and define ``predict_proba(x,
    shifts)``, ``class_names`` and ``hparams.image_size``; their class weights, if any, are
    the buffer ``class_weight``. A subclass with ``hparams.prior_tau`` corrects its
    probabilities by the buffer ``log_prior`` (:meth:`corrected`).
    """

    def init_scoring(self, num_classes: int) -> None:
        # one metric instance per stage (ModuleDict keys may not shadow Module.train)
        self.metrics = nn.ModuleDict(
            {f"{s}_": stage_metrics(num_classes) for s in ("train", "val", "test")})
        self.confusion = nn.ModuleDict({f"{s}_": ConfusionMatrix(task="multiclass",
                                                                 num_classes=num_classes)
                                        for s in ("val", "test")})
        self.losses = nn.ModuleDict({f"{s}_": MeanMetric() for s in ("val", "test")})
        self.by_dataset = nn.ModuleDict()  # "<stage>_<dataset>": scores, made by setup()
        self.val_acc_best = MaxMetric()
        # log class prior of the training data (prior correction); uniform until a fit sets it
        self.register_buffer("log_prior", torch.full((num_classes,), -float(np.log(num_classes))))
        self.prior_recorded = True  # False: loaded from a checkpoint saved without a prior
        self._confusion_matrices: dict[str, list[list[int]]] = {}
        self._dataset_names: list[str] = []

    def setup(self, stage: str) -> None:
        """Per-dataset scores when the datamodule evaluates several datasets, one dataloader
        each (``dataset_names``, e.g. :class:`~emotion_lightning.data.MultiDataModule`)."""
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        names = list(getattr(datamodule, "dataset_names", None) or [])
        self._dataset_names = names if len(names) > 1 else []
        for split in ("val", "test"):
            for name in self._dataset_names:
                if f"{split}_{name}" not in self.by_dataset:
                    self.by_dataset[f"{split}_{name}"] = stage_metrics(len(self.class_names)).to(
                        self.device)

    def predict_proba(self, x: torch.Tensor, shifts: bool = True) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define predict_proba")

    @property
    def prior_tau(self) -> float:
        """How strongly probabilities are divided by the training prior (0: not at all)."""
        return float(self.hparams.get("prior_tau") or 0.0)

    def corrected(self, probs: torch.Tensor) -> torch.Tensor:
        """``probs`` divided by the training prior to the power :attr:`prior_tau`
        (:func:`~emotion_lightning.models.prior.correct_prior`)."""
        return correct_prior(probs, self.log_prior, self.prior_tau)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # checkpoints from before prior correction have no log_prior: keep the uniform one
        state = checkpoint.get("state_dict")
        if state is not None and "log_prior" not in state:
            state["log_prior"] = self.log_prior.detach().clone()
            self.prior_recorded = False

    @torch.inference_mode()
    def predict_faces(self, crops: Sequence[np.ndarray], chunk_size: int = 64) -> np.ndarray:
        """Class probabilities (N x classes, float32) of gray uint8 face crops of any size,
        resized to ``image_size``; ``chunk_size`` crops per forward pass bounds memory."""
        chunks = [np.zeros((0, len(self.class_names)), np.float32)]
        for start in range(0, len(crops), chunk_size):
            batch = normalize_batch(crops[start:start + chunk_size], self.hparams.image_size)
            chunks.append(self.predict_proba(batch.to(self.device)).float().cpu().numpy())
        return np.concatenate(chunks)

    def _eval_step(self, stage: str, batch, dataloader_idx: int = 0) -> None:
        x, y = batch
        y = hard_labels(y)
        fitting = self._trainer is not None and self._trainer.state.fn == "fit"
        probs = self.predict_proba(x, shifts=not (fitting and stage == "val"))
        weight = getattr(self, "class_weight", None)
        loss = F.nll_loss(torch.log(probs.clamp_min(1e-8)), y, weight=weight)
        self.metrics[f"{stage}_"].update(probs, y)
        self.confusion[f"{stage}_"].update(probs, y)
        self.losses[f"{stage}_"].update(loss, weight=len(y))
        if self._dataset_names:
            self.by_dataset[f"{stage}_{self._dataset_names[dataloader_idx]}"].update(probs, y)

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("val", batch, dataloader_idx)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step("test", batch, dataloader_idx)

    def _log_scores(self, stage: str) -> None:
        """Log the stage's scores over every dataloader (synced across processes), and per
        dataset when there are several; then reset them for the next epoch."""
        scores = {f"{stage}/{k}": v for k, v in self.metrics[f"{stage}_"].compute().items()}
        scores[f"{stage}/loss"] = self.losses[f"{stage}_"].compute()
        for name in self._dataset_names:
            per = self.by_dataset[f"{stage}_{name}"]
            scores |= {f"{stage}/{name}/{k}": v for k, v in per.compute().items()}
            per.reset()
        self.metrics[f"{stage}_"].reset()
        self.losses[f"{stage}_"].reset()
        shown = {"val/acc"} if stage == "val" else set()
        self.log_dict({k: v for k, v in scores.items() if k in shown}, prog_bar=True)
        self.log_dict({k: v for k, v in scores.items() if k not in shown})

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.predict_proba(x)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.metrics["val_"]["acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)
        self._log_scores("val")
        self._score_confusion("val")

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")
        self._score_confusion("test")

    def confusion_matrix(self, stage: str = "test") -> list[list[int]]:
        """The confusion matrix of the last ``val`` or ``test`` epoch, summed over every process:
        rows are true classes, columns predicted ones, both in ``class_names`` order."""
        if stage not in self._confusion_matrices:
            raise KeyError(f"no {stage} epoch has ended yet: run trainer.test or trainer.validate "
                           "with this model first")
        return self._confusion_matrices[stage]

    def _score_confusion(self, stage: str) -> None:
        """Keep the stage's matrix (synced across processes) and log per-class P/R/F1 from it."""
        matrix = self.confusion[f"{stage}_"].compute().cpu().numpy()
        self.confusion[f"{stage}_"].reset()
        for name, values in per_class_scores(matrix, self.class_names).items():
            for key in ("precision", "recall", "f1"):
                self.log(f"{stage}/{key}/{name}", values[key])
        self._confusion_matrices[stage] = matrix.tolist()

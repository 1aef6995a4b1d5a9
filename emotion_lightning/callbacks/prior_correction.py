"""Choose the model's prior correction on the validation split just before it is tested."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn

from emotion_lightning.models.prior import (
    PRIOR_METRICS,
    PRIOR_TAUS,
    choose_prior_tau,
    training_log_prior,
)
from emotion_lightning.models.scoring import hard_labels
from emotion_lightning.records import write_json

log = logging.getLogger(__name__)


class PriorCorrection(L.Callback):
    """Before ``trainer.test`` (and ``trainer.validate`` outside a fit), scores the model's
    validation probabilities (its test-time views) divided by its training class prior raised
    to each of ``taus``, and sets ``hparams.prior_tau`` to the tau that maximises ``metric``
    (:mod:`emotion_lightning.models.prior`). The test split is never looked at.

    Logs ``prior/tau``, and ``prior/val_<metric>`` for the chosen tau and for tau 0
    (``..._uncorrected``); writes every tau's scores (per-class recall too) to
    ``<trainer.default_root_dir>/prior_search.json``. A model loaded from a checkpoint saved
    before prior correction existed (``prior_recorded`` false) gets the datamodule's training
    class counts (times its class weights) as its prior. The model needs ``log_prior`` and
    ``predict_proba(x, shifts, corrected)`` (:class:`~emotion_lightning.models.EmotionClassifier`,
    :class:`~emotion_lightning.models.ClassifierEnsemble`), the datamodule a validation split.
    """

    def __init__(self, taus: Sequence[float] | None = None, metric: str = "macro_f1") -> None:
        if metric not in PRIOR_METRICS:
            raise ValueError(f"callbacks.prior_correction.metric must be one of {PRIOR_METRICS}, "
                             f"got {metric!r}")
        self.taus = tuple(float(t) for t in taus) if taus else PRIOR_TAUS
        if any(t < 0 for t in self.taus):
            raise ValueError(f"callbacks.prior_correction.taus must be >= 0, got {list(self.taus)}")
        self.metric = metric
        self.table: list[dict] = []  # the last choice: every tau's validation scores
        self.faces = 0  # and how many validation faces it scored

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._choose(trainer, pl_module)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING:  # emotion-eval split=val, not a fit
            self._choose(trainer, pl_module)

    def _choose(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "val_dataloader"):
            raise ValueError("callbacks.prior_correction chooses its tau on a validation split: "
                             "give the trainer a datamodule with val_dataloader()")
        datamodule.setup("validate")  # a test-only run has not loaded the validation split
        if not getattr(pl_module, "prior_recorded", True):
            if not hasattr(datamodule, "class_counts"):
                raise ValueError("the checkpoint records no training prior and the datamodule "
                                 "has no class_counts(): give model.prior_tau instead")
            weights = getattr(pl_module, "class_weight", None)
            pl_module.log_prior.copy_(training_log_prior(datamodule.class_counts("train"),
                                                         weights).to(pl_module.log_prior))
            log.info("prior correction: the checkpoint records no training prior; using the "
                     "datamodule's training class counts")
        probs, labels = validation_probabilities(trainer, pl_module, datamodule.val_dataloader())
        self.faces = len(labels)
        tau, self.table = choose_prior_tau(probs, labels, pl_module.log_prior, self.taus,
                                           self.metric)
        pl_module.hparams.prior_tau = tau
        chosen = next(r for r in self.table if r["tau"] == tau)
        plain = next((r for r in self.table if r["tau"] == 0.0), None)
        log.info("prior correction: tau=%.2f chosen on %d validation faces (val %s %.4f; "
                 "uncorrected %s)", tau, len(labels), self.metric, chosen[self.metric],
                 f"{plain[self.metric]:.4f}" if plain else "not tried")
        values = {"prior/tau": tau}
        for key in PRIOR_METRICS:
            values[f"prior/val_{key}"] = chosen[key]
            if plain is not None:
                values[f"prior/val_{key}_uncorrected"] = plain[key]
        pl_module.log_dict(values, sync_dist=False)
        if trainer.is_global_zero:
            write_json({"metric": self.metric, "split": "val", "faces": self.faces, "tau": tau,
                        "classes": list(pl_module.class_names), "rows": self.table},
                       Path(trainer.default_root_dir) / "prior_search.json")


@torch.inference_mode()
def validation_probabilities(trainer: L.Trainer, pl_module: L.LightningModule, loaders
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Uncorrected class probabilities (with the test-time views) and hard labels of the
    batches of ``loaders`` (one or a list; as many as ``trainer.limit_val_batches`` allows, so
    ``fast_dev_run`` reads one), gathered from every process, on the CPU."""
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    limit = trainer.limit_val_batches
    was_training = pl_module.training
    pl_module.eval()
    probs, labels = [], []
    try:
        with trainer.precision_plugin.test_step_context():
            for loader in loaders:
                for i, batch in enumerate(loader):
                    if i >= _batch_limit(limit, loader):
                        break
                    x, y = trainer.strategy.batch_to_device(batch)
                    probs.append(pl_module.predict_proba(x, shifts=True, corrected=False).float())
                    labels.append(hard_labels(y))
    finally:
        pl_module.train(was_training)
    probs, labels = torch.cat(probs), torch.cat(labels)
    if trainer.world_size > 1:
        probs, labels = _gathered(pl_module, probs), _gathered(pl_module, labels)
    return probs.cpu(), labels.cpu()


def _batch_limit(limit: int | float, loader) -> float:
    """How many batches of ``loader`` ``limit`` (a count, or a share of its batches) allows."""
    if isinstance(limit, int):
        return limit
    if limit >= 1.0:
        return float("inf")
    return max(1, int(limit * len(loader)))


def _gathered(pl_module: L.LightningModule, rows: torch.Tensor) -> torch.Tensor:
    """Every process's ``rows`` concatenated (their numbers of rows may differ)."""
    counts = pl_module.all_gather(torch.tensor(len(rows), device=rows.device)).flatten().tolist()
    padded = torch.zeros((max(counts), *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[:len(rows)] = rows
    gathered = pl_module.all_gather(padded)
    return torch.cat([gathered[i, :n] for i, n in enumerate(counts)])

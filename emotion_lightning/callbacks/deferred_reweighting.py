"""Deferred re-weighting: class-balanced loss weights for the last part of the fit only."""

from __future__ import annotations

import logging

import lightning as L
import torch

from emotion_lightning.models.prior import balanced_class_weights, training_log_prior
from emotion_lightning.models.schedules import fit_progress

log = logging.getLogger(__name__)


class DeferredReweighting(L.Callback):
    """Trains with the model's plain loss until ``start_fraction`` of the fit, then with
    inverse-frequency class weights (``model.class_weights=balanced``'s) to its end: deferred
    re-weighting (DRW, Cao et al. 2019). The features are learnt from the data as it comes;
    the late, low-learning-rate phase moves the decisions towards the rare classes (FER2013's
    disgust is 2% of the faces), where weighting from the first step costs accuracy.

    When the weights switch, the model's training prior (``log_prior``, what prior correction
    divides by) becomes the weighted one, and the validation loss is weighted from then on.
    Progress is the share of ``trainer.max_time`` spent when the fit has a time budget, else
    the share of its optimizer steps, so a resumed fit switches where the first would have.
    Logs ``train/reweighted`` (0 or 1) each epoch. The model needs the ``class_weight`` and
    ``log_prior`` buffers and no class weights of its own
    (:class:`~emotion_lightning.models.EmotionClassifier`); the datamodule ``class_counts()``.
    """

    def __init__(self, start_fraction: float = 0.75) -> None:
        if not 0.0 <= start_fraction < 1.0:
            raise ValueError("callbacks.deferred_reweighting.start_fraction must be in [0, 1), "
                             f"got {start_fraction}")
        self.start_fraction = start_fraction
        self._progress = None
        self._weights: torch.Tensor | None = None
        self._counts: torch.Tensor | None = None
        self._switched = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not all(hasattr(pl_module, name) for name in ("class_weight", "log_prior")):
            raise TypeError(f"callbacks.deferred_reweighting: {type(pl_module).__name__} has no "
                            "class_weight and log_prior buffers to re-weight its loss by")
        if pl_module.hparams.get("class_weights") is not None:
            raise ValueError(
                f"callbacks.deferred_reweighting with model.class_weights="
                f"{pl_module.hparams.class_weights}: the model is weighted from the first step; "
                "set model.class_weights=null to defer balanced weights, or drop the callback")
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "class_counts"):
            raise ValueError("callbacks.deferred_reweighting needs a datamodule with "
                             "class_counts() (the training faces per class)")
        self._counts = torch.tensor(datamodule.class_counts("train"), dtype=torch.float32)
        self._weights = balanced_class_weights(self._counts)
        self._progress = fit_progress(trainer)
        # a resumed fit's checkpoint may hold the balanced weights already (restored by now)
        self._switched = torch.allclose(pl_module.class_weight.float().cpu(), self._weights)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch,
                             batch_idx: int) -> None:
        if self._switched or self._progress() < self.start_fraction:
            return
        self._switched = True
        pl_module.class_weight.copy_(self._weights.to(pl_module.class_weight))
        pl_module.log_prior.copy_(training_log_prior(self._counts, self._weights)
                                  .to(pl_module.log_prior))
        log.info("deferred re-weighting from %.0f%% of the fit on: %s", 100 * self._progress(),
                 dict(zip(getattr(pl_module, "class_names", range(len(self._weights))),
                          [round(w, 3) for w in self._weights.tolist()])))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("train/reweighted", float(self._switched), on_step=False, on_epoch=True)

"""Weight averages used for validation, test and checkpoints: the shared base, and stochastic
weight averaging (SWA) over the end of the fit."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

from emotion_lightning.models.schedules import fit_progress


class AveragedWeights(WeightAveraging):
    """Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` over weights and buffers
    (BatchNorm statistics too), used only once it has averaged something.

    Each validation swaps the average in (so checkpoint selection judges it), training ends with
    it copied into the model, and checkpoints save it as their ``state_dict`` (the raw weights go
    to ``current_model_state``, which resuming a fit restores). Until the first update (an average
    that starts late in the fit), validation and checkpoints see the raw weights, not the
    initial ones the base class would swap in. Test and predict on a checkpoint keep the average
    (the base class reloads the raw weights whenever it has averaged during fit). One averaging
    callback per trainer: two would swap each other's weights.
    """

    def __init__(self, **averaged_model_kwargs: Any) -> None:
        super().__init__(use_buffers=True, **averaged_model_kwargs)
        self._swapped = False

    def has_average(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        others = [type(c).__name__ for c in trainer.callbacks
                  if isinstance(c, WeightAveraging) and c is not self]
        if others:
            raise ValueError(f"{type(self).__name__} cannot share a trainer with {others}: choose "
                             "one weight average (callbacks=[default,ema] or [default,swa])")
        super().setup(trainer, pl_module, stage)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swapped = self.has_average()
        if self._swapped:
            self._swap_models(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._swapped:
            self._swap_models(pl_module)
            self._swapped = False

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.has_average():
            self._copy_average_to_current(pl_module)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if self.has_average():
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        # resuming a fit: the raw weights train on and the average carries on; a checkpoint saved
        # before the first update holds raw weights only, and the average starts afresh
        if trainer.state.fn == TrainerFn.FITTING and "current_model_state" in checkpoint:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class SWA(AveragedWeights):
    """Stochastic weight averaging (Izmailov et al., 2018): the equal-weight mean of the weights
    and BatchNorm statistics every ``every_n_steps`` optimizer steps from ``start_fraction`` of the
    fit on, under the model's own learning-rate schedule (with the CPU recipes' cosine, the
    average spans the annealing tail). Progress is the share of ``trainer.max_time`` spent when the
    fit has a time budget, else the share of its optimizer steps."""

    def __init__(self, start_fraction: float = 0.75, every_n_steps: int = 1) -> None:
        if not 0.0 <= start_fraction < 1.0 or every_n_steps < 1:
            raise ValueError("callbacks.swa needs 0 <= start_fraction < 1 and every_n_steps >= 1, "
                             f"got {start_fraction} and {every_n_steps}")
        super().__init__()
        self.start_fraction = start_fraction
        self.every_n_steps = every_n_steps
        self._progress = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._progress = fit_progress(trainer)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return (step_idx is not None and step_idx % self.every_n_steps == 0
                and self._progress is not None and self._progress() >= self.start_fraction)

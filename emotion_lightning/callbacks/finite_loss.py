"""Stop training at the first non-finite loss, before it reaches the weights."""

from __future__ import annotations

import math

import lightning as L
import torch


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run cannot recover from it."""


class StopOnNonFiniteLoss(L.Callback):
    """Raise :class:`NonFiniteLossError` (step, value, the likely cause) when a training loss
    is NaN or infinite on any process, before its backward pass.

    Without it a diverged run goes on with NaN weights, tests at chance and exits 0. The
    decision is taken by all processes together, so a DDP run stops everywhere at once.
    """

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           loss: torch.Tensor) -> None:
        value = float(loss.detach().float())
        if not trainer.strategy.reduce_boolean_decision(not math.isfinite(value), all=False):
            return
        lrs = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
        lr = f" (learning rate now {lrs[0]:.3g})" if lrs else ""
        raise NonFiniteLossError(
            f"training loss is {value} at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}){lr}: the run diverged. Likely causes: a learning rate "
            "too high for this model (lower model.optimizer.lr), fp16 overflow "
            "(trainer.precision=bf16-mixed or 32-true), or inputs with NaN/inf values. No "
            "checkpoint of these weights is saved; earlier checkpoints are kept."
        )

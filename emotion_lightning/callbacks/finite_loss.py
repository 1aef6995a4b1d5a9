"""Stop training at a non-finite loss, before a checkpoint of broken weights is written."""

from __future__ import annotations

import math

import lightning as L
import torch


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run cannot recover from it."""


class StopOnNonFiniteLoss(L.Callback):
    """Raise :class:`NonFiniteLossError` (step, value, the likely cause) when a training loss
    is NaN or infinite on any process.

    Without it a diverged run goes on with NaN weights, tests at chance and exits 0. Each
    loss is checked on its device without waiting for it; the host reads the verdict every
    ``every_n_steps`` steps (1: before each backward pass, so the first bad loss never
    reaches the weights) and before validation, so no checkpoint of broken weights is
    saved. GPU recipes raise ``every_n_steps`` so steps do not wait on the host. All
    processes decide together: a DDP run stops everywhere at once.
    """

    def __init__(self, every_n_steps: int = 1) -> None:
        if every_n_steps < 1:
            raise ValueError(f"callbacks.finite_loss.every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self._pending: list[tuple[int, torch.Tensor]] = []  # (step, loss) not yet read

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = []

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           loss: torch.Tensor) -> None:
        self._pending.append((trainer.global_step, loss.detach().float().reshape(())))
        if len(self._pending) >= self.every_n_steps:
            self._check(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        """Read the pending losses (one transfer) and raise at the first non-finite one.

        Nothing pending: no collective either (every process has as many pending losses, so
        they all skip or all decide; a collective here while rank 0 alone syncs the progress
        bar's metrics would hang a DDP run)."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        values = torch.stack([v for _, v in pending]).tolist()
        bad = next(((step, v) for (step, _), v in zip(pending, values)
                    if not math.isfinite(v)), None)
        if not trainer.strategy.reduce_boolean_decision(bad is not None, all=False):
            return
        lrs = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
        lr = f" (learning rate now {lrs[0]:.3g})" if lrs else ""
        where = f"{bad[1]} at step {bad[0]}" if bad else "non-finite on another process"
        raise NonFiniteLossError(
            f"training loss is {where} (epoch "
            f"{trainer.current_epoch}){lr}: the run diverged. Likely causes: a learning rate "
            "too high for this model (lower model.optimizer.lr), fp16 overflow "
            "(trainer.precision=bf16-mixed or 32-true), or inputs with NaN/inf values. No "
            "checkpoint of these weights is saved; earlier checkpoints are kept."
        )

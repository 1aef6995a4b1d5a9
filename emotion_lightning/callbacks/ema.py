"""An exponential moving average (EMA) of the weights for validation, test and checkpoints."""

from __future__ import annotations

import torch

from emotion_lightning.callbacks.weight_averaging import AveragedWeights


class WarmupEMA:
    """``multi_avg_fn`` of :class:`torch.optim.swa_utils.AveragedModel`: ``average <- decay *
    average + (1 - decay) * weights`` in place (one fused op per dtype), the decay ramped up as
    ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n`` when ``warmup`` (so the
    average forgets the random init quickly)."""

    def __init__(self, decay: float, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"callbacks.ema.decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup

    def decay_at(self, num_averaged: int) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + num_averaged) / (10.0 + num_averaged))

    def __call__(self, averages: list[torch.Tensor], currents: list[torch.Tensor],
                 num_averaged: torch.Tensor) -> None:
        decay = self.decay_at(int(num_averaged))
        if averages[0].is_floating_point():
            torch._foreach_lerp_(averages, currents, 1.0 - decay)
        else:  # integer buffers (BatchNorm's num_batches_tracked)
            for average, current in zip(averages, currents):
                average.copy_(average * decay + current * (1.0 - decay))


class EMA(AveragedWeights):
    """EMA of the weights and buffers (BatchNorm statistics too), updated every
    ``every_n_steps`` optimizer steps from step ``start_step`` on; validation, test and the
    checkpoints use it as :class:`AveragedWeights` says."""

    def __init__(self, decay: float = 0.999, warmup: bool = True, start_step: int = 0,
                 every_n_steps: int = 1) -> None:
        if start_step < 0 or every_n_steps < 1:
            raise ValueError(f"callbacks.ema: start_step must be >= 0 and every_n_steps >= 1, "
                             f"got {start_step} and {every_n_steps}")
        super().__init__(multi_avg_fn=WarmupEMA(decay, warmup))
        self.start_step = start_step
        self.every_n_steps = every_n_steps

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return (step_idx is not None and step_idx >= self.start_step
                and (step_idx - self.start_step) % self.every_n_steps == 0)

"""Training images per second, shown in the progress bar and logged per epoch."""

from __future__ import annotations

import time
from collections import deque

import lightning as L
import torch


def batch_size_of(batch) -> int:
    """Samples in a batch: an ``(x, y)`` pair or a bare tensor."""
    x = batch[0] if isinstance(batch, (list, tuple)) else batch
    return int(x.shape[0]) if isinstance(x, torch.Tensor) else len(x)


class ImagesPerSecond(L.Callback):
    """Training images per second: ``train/img_per_s_recent`` over the last ``window`` batches
    (each step, on the progress bar) and ``train/img_per_s`` over the epoch (each epoch).

    Rates are over all processes (per-process rate x world size) and count data loading, the
    step and logging, but not validation.
    """

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self._recent: deque[tuple[float, int]] = deque(maxlen=window)
        self._last: float | None = None
        self._epoch_images = 0
        self._epoch_seconds = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._recent.clear()
        self._last = time.perf_counter()
        self._epoch_images, self._epoch_seconds = 0, 0.0

    def on_validation_end(self, trainer, pl_module) -> None:
        self._last = time.perf_counter()  # the next interval starts after validation

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last is None:
            self._last = now
            return
        images = batch_size_of(batch) * trainer.world_size
        elapsed, self._last = now - self._last, now
        self._recent.append((elapsed, images))
        self._epoch_images += images
        self._epoch_seconds += elapsed
        seconds = sum(e for e, _ in self._recent)
        if seconds > 0:
            pl_module.log("train/img_per_s_recent", sum(n for _, n in self._recent) / seconds,
                          prog_bar=True, on_step=True, on_epoch=False)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._epoch_seconds > 0:
            pl_module.log("train/img_per_s", self._epoch_images / self._epoch_seconds,
                          on_step=False, on_epoch=True)

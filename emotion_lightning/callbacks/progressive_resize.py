"""Progressive resizing: train on smaller images first, at the full size by the end."""

from __future__ import annotations

import lightning as L

from emotion_lightning.models.schedules import fit_progress


def progressive_size(progress: float, start_size: int, full_size: int, start_fraction: float,
                     end_fraction: float, multiple: int) -> int:
    """Training input side at ``progress`` in [0, 1]: ``start_size`` until ``start_fraction``,
    then a linear ramp to ``full_size`` at ``end_fraction``; sizes on the ramp are rounded down to
    ``multiple`` but never below ``start_size``."""
    if progress >= end_fraction or start_size >= full_size:
        return full_size
    ramp = max(0.0, progress - start_fraction) / (end_fraction - start_fraction)
    size = start_size + ramp * (full_size - start_size)
    return min(full_size, max(start_size, int(size) // multiple * multiple))


class ProgressiveResize(L.Callback):
    """Resizes the training batches (bilinear, antialiased) to a side that grows from
    ``start_size`` to the data's own size over the fit; validation, test and predict keep the
    full size.

    Early steps on small images are cheaper (a 64-px batch costs ~0.45 of a 96-px one), so a
    time-budgeted recipe sees more images; the last ``1 - end_fraction`` of the fit trains at the
    full size, so the network ends matched to the size it is tested at. Progress is the share of
    ``trainer.max_time`` spent when the fit has a time budget, else the share of its optimizer
    steps; the size is a function of progress alone, so a resumed fit carries on where it was.
    The model must have a ``train_input_size`` attribute (:class:`EmotionClassifier` does).
    """

    def __init__(self, start_size: int, start_fraction: float = 0.3, end_fraction: float = 0.7,
                 multiple: int = 8) -> None:
        if start_size < 8 or multiple < 1:
            raise ValueError(f"callbacks.progressive_resize: start_size must be >= 8 pixels and "
                             f"multiple >= 1, got {start_size} and {multiple}")
        if not 0.0 <= start_fraction < end_fraction <= 1.0:
            raise ValueError("callbacks.progressive_resize needs 0 <= start_fraction < "
                             f"end_fraction <= 1, got {start_fraction} and {end_fraction}")
        self.start_size = start_size
        self.start_fraction = start_fraction
        self.end_fraction = end_fraction
        self.multiple = multiple
        self._progress = None
        self._full_size = 0

    def on_fit_start(self, trainer, pl_module) -> None:
        if not hasattr(pl_module, "train_input_size"):
            raise TypeError(f"callbacks.progressive_resize: {type(pl_module).__name__} has no "
                            "train_input_size attribute to resize its training batches by")
        self._progress = fit_progress(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._full_size = int(batch[0].shape[-1])
        size = progressive_size(self._progress(), self.start_size, self._full_size,
                                self.start_fraction, self.end_fraction, self.multiple)
        pl_module.train_input_size = None if size >= self._full_size else size

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._full_size:  # a resumed fit first ends the epoch its checkpoint is from
            return
        size = pl_module.train_input_size or self._full_size
        pl_module.log("train/input_size", float(size), on_step=False, on_epoch=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        pl_module.train_input_size = None

"""``checkpoints/interrupted.ckpt`` when a fit stops early, but only when it holds training."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.callbacks import OnExceptionCheckpoint

from emotion_lightning.callbacks.finite_loss import NonFiniteLossError

log = logging.getLogger(__name__)


class InterruptedCheckpoint(OnExceptionCheckpoint):
    """Lightning's :class:`OnExceptionCheckpoint` (Ctrl-C, SIGTERM, any error during fit),
    except when nothing was trained in this fit (a data error in ``setup``, a checkpoint that
    does not load) or the weights are broken (:class:`NonFiniteLossError`): such a file would
    only make the next command in the run dir look like an earlier run to resume."""

    def __init__(self, dirpath: str, filename: str = "interrupted") -> None:
        super().__init__(dirpath, filename)
        self._trained = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trained = False

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        self._trained = True

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule,
                     exception: BaseException) -> None:
        if isinstance(exception, NonFiniteLossError):
            log.warning("not saving %s: the weights are no longer finite", self.ckpt_path)
        elif not self._trained:
            log.warning("not saving %s: the fit stopped before its first training step",
                        self.ckpt_path)
        else:
            super().on_exception(trainer, pl_module, exception)

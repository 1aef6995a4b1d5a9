"""Classification reports: confusion matrices to files and loggers, test samples to W&B."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

from emotion_lightning.constants import GRAY_MEAN, GRAY_STD
from emotion_lightning.models.reporting import confusion_figure, save_confusion
from emotion_lightning.models.scoring import ClassScoring, hard_labels


class ClassificationReport(L.Callback):
    """After each ``val`` and ``test`` epoch of a :class:`~emotion_lightning.models.scoring.
    ClassScoring` model: ``<stage>_confusion_matrix.{csv,png}`` in the run dir, the figure to
    W&B (``log_image``) or TensorBoard (``add_figure``); after ``test``, a table of the first
    ``samples`` test images with true and predicted class and confidence to loggers with
    tables (W&B). Rank 0 only; sanity checks are skipped."""

    def __init__(self, samples: int = 16) -> None:
        if samples < 0:
            raise ValueError(f"callbacks.report.samples must be >= 0, got {samples}")
        self.samples = samples
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._report(trainer, pl_module, "val")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        if batch_idx == 0 and self.samples and isinstance(pl_module, ClassScoring):
            x, y = batch
            self._batch = (x[:self.samples].detach(), y[:self.samples].detach())

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, pl_module, "test")
        # by type: fast_dev_run's stand-in logger answers every attribute, and logging to it
        # must not need wandb installed
        tables = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if self._batch is not None and tables and trainer.is_global_zero:
            self._log_samples(pl_module, tables, *self._batch)
        self._batch = None

    @staticmethod
    def _report(trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not trainer.is_global_zero or not isinstance(pl_module, ClassScoring):
            return  # e.g. the conv1 distiller: nothing to classify
        matrix, names = pl_module.confusion_matrix(stage), pl_module.class_names
        out = Path(trainer.default_root_dir) / f"{stage}_confusion_matrix"
        _, png = save_confusion(matrix, names, out,
                                title=f"{stage} (epoch {trainer.current_epoch})")
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"{stage}/confusion_matrix", images=[str(png)])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(f"{stage}/confusion_matrix",
                                             confusion_figure(matrix, names), trainer.global_step)

    @staticmethod
    def _log_samples(pl_module, tables: list, x: torch.Tensor, y: torch.Tensor) -> None:
        import wandb  # only W&B loggers get the table

        with torch.no_grad():
            conf, pred = pl_module.predict_proba(x).max(dim=1)
        names = pl_module.class_names
        y = hard_labels(y)
        images = ((x[:, 0].float().cpu() * GRAY_STD + GRAY_MEAN).clamp(0, 1) * 255).to(torch.uint8)
        rows = [[wandb.Image(img), names[t], names[p], float(c)]
                for img, t, p, c in zip(images.numpy(), y.tolist(), pred.tolist(), conf.tolist())]
        for logger in tables:
            logger.log_table(key="test/samples", columns=["image", "true", "predicted",
                                                          "confidence"], data=rows)

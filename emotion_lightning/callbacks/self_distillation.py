"""Self-distillation: the model's own softened predictions join its training targets."""

from __future__ import annotations

import logging
import time

import lightning as L
import torch

from emotion_lightning.models.distillation import soft_labels
from emotion_lightning.models.schedules import fit_progress

log = logging.getLogger(__name__)


class SelfDistillation(L.Callback):
    """From ``start_fraction`` of the fit on, every ``every_n_epochs`` epochs, the model labels
    each unaugmented training face (eval mode, at the model's ``image_size``) and trains on
    ``(1 - w) * targets + w * softmax(logits / temperature)``, where ``targets`` are the ones the
    fit started with (one-hot labels, or a teacher's soft labels) and ``w = weight * progress``
    grows with the share of the fit done (Kim et al.'s progressive self-knowledge distillation,
    refreshed by epochs instead of per batch). It needs no teacher (on FER2013's seven classes
    it raised validation but not PublicTest: ``S1`` in the README). Each refresh costs one
    inference pass over the training faces (a progress bar). Progress is the share of
    ``trainer.max_time`` spent when the fit has a time budget, else of its optimizer steps; a
    resumed fit refreshes at its first epoch past ``start_fraction``. No refresh starts an epoch
    the fit will not finish (judged by the progress the previous epoch took). Needs a datamodule
    with ``train_faces()`` and ``set_train_targets()`` and ``data.loader=workers`` (e.g.
    ``data=fer``); batches the DataLoader workers had already prepared keep the previous
    targets.
    """

    def __init__(self, start_fraction: float = 0.7, every_n_epochs: int = 2,
                 weight: float = 0.8, temperature: float = 2.0) -> None:
        needs = {"start_fraction in [0, 1)": 0.0 <= start_fraction < 1.0,
                 "every_n_epochs >= 1": every_n_epochs >= 1,
                 "weight in (0, 1]": 0.0 < weight <= 1.0, "temperature > 0": temperature > 0}
        unmet = [need for need, met in needs.items() if not met]
        if unmet:
            raise ValueError(f"callbacks.self_distillation needs {', '.join(unmet)}; got "
                             f"start_fraction={start_fraction}, every_n_epochs={every_n_epochs}, "
                             f"weight={weight}, temperature={temperature}")
        self.start_fraction = start_fraction
        self.every_n_epochs = every_n_epochs
        self.weight = weight
        self.temperature = temperature
        self._progress = None
        self._base: torch.Tensor | None = None  # the targets the fit started with
        self._last_epoch: int | None = None
        self._epoch_start: float | None = None  # progress when the previous epoch started

    def on_fit_start(self, trainer, pl_module) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "set_train_targets"):
            raise ValueError("callbacks.self_distillation needs a datamodule with train_faces() "
                             "and set_train_targets() (e.g. data=fer)")
        _, labels = datamodule.train_faces()
        if not hasattr(datamodule.datasets["train"], "targets"):  # hard labels: one-hot rows
            onehot = torch.eye(len(datamodule.class_names))[torch.as_tensor(labels)]
            datamodule.set_train_targets(onehot.numpy())
        self._progress = fit_progress(trainer)
        self._base, self._last_epoch, self._epoch_start = None, None, None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        progress = self._progress()
        previous, self._epoch_start = self._epoch_start, progress
        epoch = trainer.current_epoch
        due = self._last_epoch is None or epoch - self._last_epoch >= self.every_n_epochs
        last_partial = previous is not None and progress + (progress - previous) > 1.0
        if progress < self.start_fraction or not due or last_partial:
            return
        dataset = trainer.datamodule.datasets["train"]
        if self._base is None:  # after every on_fit_start: a teacher's soft labels included
            self._base = dataset.targets.clone()
        weight = self.weight * progress
        start = time.perf_counter()
        was_training = pl_module.training
        pl_module.eval()
        try:
            own = torch.from_numpy(soft_labels(
                [pl_module], dataset.images, self.temperature, pl_module.device,
                trainer.precision_plugin.forward_context(), progress=trainer.is_global_zero,
                desc="own soft labels"))
        finally:
            pl_module.train(was_training)
        dataset.targets.copy_((1.0 - weight) * self._base + weight * own)
        self._last_epoch = epoch
        agreement = (own.argmax(1) == torch.as_tensor(dataset.labels)).float().mean()
        log.info("self-distillation at %.0f%% of the fit: weight %.3f, own labels of %d faces "
                 "(%.3f agree with the labels) in %.1f s", 100 * progress, weight, len(own),
                 agreement, time.perf_counter() - start)
        pl_module.log_dict({"self_distill/weight": weight, "self_distill/agreement": agreement},
                           on_step=False, on_epoch=True)

"""EmotionClassifier: a gray backbone trained with cross-entropy, evaluated per class."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import ConfusionMatrix, MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from emotion_lightning.data.presets import normalize_batch
from emotion_lightning.models.mixing import BatchMixer, soft_cross_entropy
from emotion_lightning.models.registry import create_backbone
from emotion_lightning.models.reporting import (
    confusion_figure,
    per_class_scores,
    save_confusion,
)
from emotion_lightning.models.schedules import time_budget_progress
from emotion_lightning.models.test_time import average_probabilities
from emotion_lightning.models.weights import (
    NO_WEIGHTS,
    checkpoint_class_names,
    load_checkpoint_file,
)

log = logging.getLogger(__name__)
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def stage_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, balanced accuracy (macro recall) and macro F1."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "balanced_acc": MulticlassAccuracy(num_classes, average="macro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
        },
        compute_groups=False,  # each member is logged, computed and reset on its own
    )


class EmotionClassifier(L.LightningModule):
    """Classifies gray face crops into ``class_names``.

    Args:
        class_names: ordered class names, stored in the checkpoint.
        arch: a registered backbone (``emotion_lightning.models.list_backbones()``).
        weights: ``None``, ``"imagenet"`` or a local ``.pth``/``.ckpt`` (e.g. a distilled
            gray backbone or a stage-1 classifier), loaded weights-only. When the file is a
            classifier checkpoint whose recorded ``class_names`` differ from ``class_names``
            (other classes, or the same ones in another order), its head would map outputs to
            the wrong classes: the head is re-initialised and a warning names both lists. The
            backbone is always reused.
        conv1_init: ``random`` or ``rgb_sum`` (for RGB weights).
        image_size: input side the model was trained at (used by evaluation and inference).
        class_weights: ``None``, ``"balanced"`` (inverse train frequency) or one weight per class.
        label_smoothing: cross-entropy label smoothing.
        mixup_alpha: mixup's Beta(alpha, alpha) for training batches (0: off; 0.2-0.4 typical).
        cutmix_alpha: cutmix's Beta(alpha, alpha) (0: off; 1.0 typical); with mixup on too,
            each mixed batch uses one of the two (:class:`~emotion_lightning.models.mixing.BatchMixer`).
        mix_p: share of training batches mixed when mixup or cutmix is on. The loss takes the
            mixed (soft) targets; training metrics score the dominant label of each image.
        channels_last: run the backbone in channels-last memory format.
        test_time_flip: average predictions over the image and its mirror in val/test/predict.
        test_time_shift: in test/predict, also average over the image moved this many pixels
            diagonally four ways (border black, like the training pad-and-crop): 5 views, 10
            with the flip. 0: off. Validation during fit (every epoch) uses the flip only.
        test_time_crop: in test/predict, average over the four corner and the centre crops of
            this many pixels instead (ten-crop with the flip; 0: off; not with the shifts).
        decay_norm_and_bias: ``False`` puts BatchNorm weights and all biases in a parameter group
            with ``weight_decay=0`` (the optimizer's weight decay then applies to weights only).
        optimizer: ``params -> Optimizer`` (a Hydra partial); default AdamW(lr=1e-3).
        scheduler: ``optimizer -> LRScheduler``, stepped every optimizer step when it takes
            ``total_steps`` (given the run's step count) or ``progress`` (given the spent share
            of ``trainer.max_time``: :func:`~emotion_lightning.models.schedules.warmup_cosine_time`),
            otherwise every epoch.
        logged_samples: test images logged with their predictions to loggers with tables (W&B).
        initialised_from: filled in checkpoints with the original ``weights``/``conv1_init``.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        arch: str = "resnet18",
        weights: str | None = None,
        conv1_init: str = "random",
        image_size: int = 48,
        class_weights: str | Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_p: float = 1.0,
        channels_last: bool = False,
        test_time_flip: bool = False,
        test_time_shift: int = 0,
        test_time_crop: int = 0,
        decay_norm_and_bias: bool = True,
        logged_samples: int = 16,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        initialised_from: dict | None = None,
    ) -> None:
        super().__init__()
        class_names = [str(c) for c in class_names]
        if isinstance(class_weights, str) and class_weights != "balanced":
            raise ValueError(f"class_weights must be null, 'balanced' or a list, got {class_weights!r}")
        if class_weights is not None and not isinstance(class_weights, str):
            class_weights = [float(w) for w in class_weights]
            if len(class_weights) != len(class_names):
                raise ValueError(f"{len(class_weights)} class_weights for {len(class_names)} classes")
        if test_time_shift < 0:
            raise ValueError(f"test_time_shift must be >= 0 pixels, got {test_time_shift}")
        if not 0 <= test_time_crop <= image_size or (test_time_crop and test_time_shift):
            raise ValueError(f"test_time_crop={test_time_crop}: give 0 (off) or a crop side up to "
                             f"image_size={image_size}, with test_time_shift=0")
        # records the normalised class_names/class_weights above (read from this frame)
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.net = create_backbone(arch, len(class_names), conv1_init, weights)
        _reset_head_if_classes_differ(self.net, weights, class_names)
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.mixer = BatchMixer(len(class_names), mixup_alpha, cutmix_alpha, mix_p)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        initial = torch.ones(len(class_names))
        if isinstance(class_weights, list):
            initial = torch.tensor(class_weights)
        self.register_buffer("class_weight", initial)
        n = len(class_names)
        # one metric instance per stage (ModuleDict keys may not shadow Module.train)
        self.metrics = nn.ModuleDict({f"{s}_": stage_metrics(n) for s in ("train", "val", "test")})
        self.confusion = nn.ModuleDict(
            {f"{s}_": ConfusionMatrix(task="multiclass", num_classes=n) for s in ("val", "test")}
        )
        self.val_acc_best = MaxMetric()
        self._confusion_matrices: dict[str, list[list[int]]] = {}

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams.class_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    def predict_proba(self, x: torch.Tensor, shifts: bool = True) -> torch.Tensor:
        """Class probabilities averaged over the test-time views (``test_time_flip``, and
        ``test_time_shift`` or ``test_time_crop`` unless ``shifts=False``)."""
        shift = self.hparams.test_time_shift if shifts else 0
        crop = self.hparams.test_time_crop if shifts else 0
        return average_probabilities(self, x, self.hparams.test_time_flip, shift, crop)

    @torch.inference_mode()
    def predict_faces(self, crops: Sequence[np.ndarray], chunk_size: int = 64) -> np.ndarray:
        """Class probabilities (N x classes, float32) of gray uint8 face crops of any size,
        resized to ``image_size``; ``chunk_size`` crops per forward pass bounds memory."""
        chunks = [np.zeros((0, len(self.class_names)), np.float32)]
        for start in range(0, len(crops), chunk_size):
            batch = normalize_batch(crops[start:start + chunk_size], self.hparams.image_size)
            chunks.append(self.predict_proba(batch.to(self.device)).float().cpu().numpy())
        return np.concatenate(chunks)

    # -- training -----------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.hparams.class_weights == "balanced":
            datamodule = self.trainer.datamodule
            if datamodule is None or not hasattr(datamodule, "class_counts"):
                raise ValueError("class_weights=balanced needs a datamodule with class_counts()")
            counts = torch.tensor(datamodule.class_counts("train"), dtype=torch.float32)
            weights = counts.sum() / (len(counts) * counts.clamp(min=1))
            self.class_weight.copy_(weights.to(self.class_weight.device))
            log.info("balanced class weights: %s",
                     dict(zip(self.class_names, [round(w, 3) for w in weights.tolist()])))

    def on_train_start(self) -> None:
        self.val_acc_best.reset()  # forget the sanity check

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, weight=self.class_weight,
                               label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.mixer.enabled:
            x, targets = self.mixer(x, y)
            logits = self(x)
            loss = soft_cross_entropy(logits, targets, self.class_weight,
                                      self.hparams.label_smoothing)
            y = targets.argmax(dim=1)  # the dominant label, for the training metrics
        else:
            logits = self(x)
            loss = self._loss(logits, y)
        self.metrics["train_"].update(logits.detach(), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict({f"train/{k}": m for k, m in self.metrics["train_"].items()},
                      on_step=False, on_epoch=True)
        return loss

    def _eval_step(self, stage: str, batch) -> None:
        x, y = batch
        fitting = self._trainer is not None and self._trainer.state.fn == "fit"
        probs = self.predict_proba(x, shifts=not (fitting and stage == "val"))
        loss = F.nll_loss(torch.log(probs.clamp_min(1e-8)), y, weight=self.class_weight)
        self.metrics[f"{stage}_"].update(probs, y)
        self.confusion[f"{stage}_"].update(probs, y)
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True)
        self.log_dict({f"{stage}/{k}": m for k, m in self.metrics[f"{stage}_"].items()},
                      on_step=False, on_epoch=True, prog_bar=stage == "val")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step("test", batch)
        if batch_idx == 0 and self.hparams.logged_samples:
            x, y = batch
            k = self.hparams.logged_samples
            with torch.no_grad():
                conf, pred = self.predict_proba(x[:k]).max(dim=1)
            self._samples = (x[:k].detach().cpu(), y[:k].cpu(), pred.cpu(), conf.cpu())

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        return self.predict_proba(x)

    # -- epoch ends: best accuracy, per-class scores, confusion matrices ---------------
    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.metrics["val_"]["acc"].compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)
        self._log_confusion("val")

    def on_test_epoch_end(self) -> None:
        self._log_confusion("test")
        self._log_samples()

    def _log_samples(self) -> None:
        """A table of test images with true and predicted class and confidence (W&B)."""
        samples = getattr(self, "_samples", None)
        tables = [lg for lg in self.loggers if hasattr(lg, "log_table")]
        if samples is None or not tables or not self.trainer.is_global_zero:
            return
        import wandb

        from emotion_lightning.constants import GRAY_MEAN, GRAY_STD

        x, y, pred, conf = samples
        images = ((x[:, 0] * GRAY_STD + GRAY_MEAN).clamp(0, 1) * 255).to(torch.uint8).numpy()
        rows = [[wandb.Image(img), self.class_names[t], self.class_names[p], float(c)]
                for img, t, p, c in zip(images, y.tolist(), pred.tolist(), conf.tolist())]
        for logger in tables:
            logger.log_table(key="test/samples", columns=["image", "true", "predicted", "confidence"],
                             data=rows)

    def confusion_matrix(self, stage: str = "test") -> list[list[int]]:
        """The confusion matrix of the last ``val`` or ``test`` epoch, summed over every process:
        rows are true classes, columns predicted ones, both in ``class_names`` order."""
        if stage not in self._confusion_matrices:
            raise KeyError(f"no {stage} epoch has ended yet: run trainer.test or trainer.validate "
                           "with this model first")
        return self._confusion_matrices[stage]

    def _log_confusion(self, stage: str) -> None:
        matrix = self.confusion[f"{stage}_"].compute().cpu().numpy()  # synced across processes
        self.confusion[f"{stage}_"].reset()
        scores = per_class_scores(matrix, self.class_names)
        for name, values in scores.items():
            for key in ("precision", "recall", "f1"):
                self.log(f"{stage}/{key}/{name}", values[key])
        self._confusion_matrices[stage] = matrix.tolist()
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        out = Path(self.trainer.default_root_dir) / f"{stage}_confusion_matrix"
        _, png = save_confusion(matrix, self.class_names, out,
                                title=f"{stage} (epoch {self.current_epoch})")
        for logger in self.loggers:
            if hasattr(logger, "log_image"):  # W&B
                logger.log_image(key=f"{stage}/confusion_matrix", images=[str(png)])
            elif hasattr(getattr(logger, "experiment", None), "add_figure"):  # TensorBoard
                logger.experiment.add_figure(f"{stage}/confusion_matrix",
                                             confusion_figure(matrix, self.class_names),
                                             self.global_step)

    # -- optimisation -------------------------------------------------------------------
    def configure_optimizers(self):
        factory = self.optimizer_factory or (lambda ps: torch.optim.AdamW(ps, lr=1e-3))
        optimizer = factory(self._parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        wants = inspect.signature(self.scheduler_factory).parameters
        if "total_steps" in wants:
            total = int(self.trainer.estimated_stepping_batches)
            scheduler = self.scheduler_factory(optimizer, total_steps=total)
        elif "progress" in wants:
            scheduler = self.scheduler_factory(optimizer, progress=time_budget_progress(self.trainer))
        else:
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                     "interval": "epoch"}}
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _parameter_groups(self) -> list:
        """Trainable parameters; without decay on norm weights and biases unless configured."""
        params = [p for p in self.parameters() if p.requires_grad]
        if self.hparams.decay_norm_and_bias:
            return params
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    # -- checkpoints are self-describing and load offline ------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        hparams = checkpoint.get("hyper_parameters", {})
        if hparams.get("weights") is not None or hparams.get("conv1_init") != "random":
            hparams["initialised_from"] = {"weights": hparams.get("weights"),
                                           "conv1_init": hparams.get("conv1_init")}
            hparams["weights"] = None  # the state dict holds the weights: load needs no file
            hparams["conv1_init"] = "random"


def _reset_head_if_classes_differ(net: nn.Module, weights: str | None,
                                  class_names: list[str]) -> None:
    """Re-initialise ``net``'s head when ``weights`` records other class names (and warn)."""
    if weights in NO_WEIGHTS or weights == "imagenet":
        return
    source = checkpoint_class_names(weights)
    if source is None or source == class_names:
        return
    head = getattr(net, "fc", None)
    if isinstance(head, nn.Linear):
        head.reset_parameters()
        action = "re-initialised the classifier head (the backbone is reused)"
    else:
        action = "could not find a Linear head named 'fc' to re-initialise: check the head"
    log.warning("weights %s were trained for classes %s but this model has %s: %s",
                weights, source, class_names, action)


def load_classifier(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    test_time_flip: bool | None = None,
    test_time_shift: int | None = None,
    test_time_crop: int | None = None,
) -> EmotionClassifier:
    """An EmotionClassifier from its checkpoint, loaded weights-only, for evaluation or use.

    The file is checked first with :func:`load_checkpoint_file`, so a missing file, a file that
    is not a checkpoint or one that would run code when unpickled fails with a clear error.
    ``test_time_flip``/``test_time_shift``/``test_time_crop`` override the checkpoint's
    settings when not ``None`` (giving a crop turns the checkpoint's shifts off).
    """
    path = Path(path).expanduser()
    load_checkpoint_file(path)
    model = EmotionClassifier.load_from_checkpoint(path, map_location=map_location,
                                                   weights_only=True)
    if test_time_flip is not None:
        model.hparams.test_time_flip = bool(test_time_flip)
    if test_time_shift is not None:
        if int(test_time_shift) < 0:
            raise ValueError(f"test_time_shift must be >= 0 pixels, got {test_time_shift}")
        model.hparams.test_time_shift = int(test_time_shift)
    if test_time_crop is not None:
        crop = int(test_time_crop)
        if not 0 <= crop <= model.hparams.image_size:
            raise ValueError(f"test_time_crop must be 0 (off) or a crop side up to the model's "
                             f"image_size={model.hparams.image_size}, got {crop}")
        model.hparams.test_time_crop = crop
        if crop and test_time_shift is None:
            model.hparams.test_time_shift = 0
    return model.eval()

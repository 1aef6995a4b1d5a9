"""Gray distillation, the model: :class:`Conv1Distiller` learns a gray conv1 so a frozen RGB
ResNet works on luma images.

The student is the teacher with a 1-channel conv1; only that conv trains, to make the
student's output on the luma of an image match the teacher's output on its colour original
(L2 loss). Both networks stay in eval mode, so BatchNorm statistics never move. The checkpoint
is a gray backbone: ``EmotionClassifier(weights=<ckpt>)`` and ``build_gray_resnet(weights=<ckpt>)``
load its ``student.`` weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from functools import partial

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy
from torchvision import models

from emotion_lightning.models.gray_resnet import gray_conv1_from_rgb
from emotion_lightning.models.weights import resolve_pretrained

TARGETS = ("logits", "features")
STAGES = ("train", "val", "test")

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def build_rgb_resnet(arch: str = "resnet50", weights: str | None = "imagenet") -> models.ResNet:
    """A torchvision RGB ResNet with ImageNet (``imagenet``), local-file or no (``None``) weights."""
    model = models.get_model(arch, weights=None)
    if not isinstance(model, models.ResNet):
        raise ValueError(f"{arch} is not a torchvision ResNet")
    state = resolve_pretrained(arch, weights)
    if state is not None:
        model.load_state_dict(state)
    return model


def pooled_features(net: models.ResNet, x: torch.Tensor) -> torch.Tensor:
    """A ResNet's globally pooled features (the input of its ``fc``)."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return torch.flatten(net.avgpool(x), 1)


class Conv1Distiller(L.LightningModule):
    """Distil an RGB ResNet's conv1 into a 1-channel conv.

    Batches are ``{"rgb": [N, 3, H, W], "gray": [N, 1, H, W]}`` views of the same crops
    (see :class:`~emotion_lightning.data.gray_distill.GrayDistillDataModule`).

    Args:
        arch: torchvision ResNet name (``resnet50`` in the recipe).
        teacher_weights: ``imagenet``, a local state-dict file, or ``None`` (random: tests).
        conv1_init: ``random`` (the recipe) or ``rgb_sum`` (sum of the teacher's RGB filters).
        target: match ``logits`` (the recipe) or the pooled ``features``.
        optimizer: factory called with conv1's parameters (a Hydra ``_partial_``); default
            Adam, lr 1e-3.
        scheduler: optional factory called with the optimizer, stepped every epoch.
        data_root: where the images came from; stored with the hyper-parameters as provenance.
    """

    def __init__(
        self,
        arch: str = "resnet50",
        teacher_weights: str | None = "imagenet",
        conv1_init: str = "random",
        target: str = "logits",
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        data_root: str | None = None,
    ) -> None:
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.teacher = build_rgb_resnet(arch, teacher_weights)
        self.student = copy.deepcopy(self.teacher)
        self.student.conv1 = gray_conv1_from_rgb(self.teacher.conv1, conv1_init)
        self.teacher.requires_grad_(False)
        self.student.requires_grad_(False)
        self.student.conv1.requires_grad_(True)
        self.target = target
        self.optimizer_factory = optimizer or partial(torch.optim.Adam, lr=1e-3)
        self.scheduler_factory = scheduler
        num_classes = self.teacher.fc.out_features
        for stage in STAGES:
            metrics = nn.ModuleDict({
                "loss": MeanMetric(),
                "cosine": MeanMetric(),
                "agreement": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            })
            setattr(self, f"{stage}_metrics", metrics)
        self.train()

    def train(self, mode: bool = True) -> Conv1Distiller:
        """Set the mode, but keep teacher and student in eval: their BatchNorm stays frozen."""
        super().train(mode)
        self.teacher.eval()
        self.student.eval()
        return self

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        """The student's logits for normalised gray images ``[N, 1, H, W]``."""
        return self.student(gray)

    def outputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Teacher (on ``rgb``) and student (on ``gray``) pooled features and logits."""
        with torch.no_grad():
            teacher_features = pooled_features(self.teacher, batch["rgb"])
            teacher_logits = self.teacher.fc(teacher_features)
        student_features = pooled_features(self.student, batch["gray"])
        return {
            "teacher_features": teacher_features,
            "teacher_logits": teacher_logits,
            "student_features": student_features,
            "student_logits": self.student.fc(student_features),
        }

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        out = self.outputs(batch)
        student, teacher = out[f"student_{self.target}"], out[f"teacher_{self.target}"]
        loss = F.mse_loss(student, teacher)
        metrics = getattr(self, f"{stage}_metrics")
        metrics["loss"].update(loss.detach(), weight=len(student))
        metrics["cosine"].update(F.cosine_similarity(student.detach(), teacher, dim=1))
        metrics["agreement"].update(out["student_logits"].detach(), out["teacher_logits"].argmax(1))
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True,
                     prog_bar=name != "cosine")
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.student.conv1.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/loss"},
        }

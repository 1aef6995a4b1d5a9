"""Freeze all but the last N units of the backbone, optionally unfreezing more later."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from emotion_lightning.callbacks.units import UNITS, network_units

log = logging.getLogger(__name__)
BN_POLICIES = ("frozen", "affine", "train")


class FreezeAllButLastN(BaseFinetuning):
    """Train only the last ``trainable_last`` units of ``pl_module.<module_attr>``.

    Args:
        trainable_last: how many units at the end stay trainable (0 freezes everything).
        unit: ``children``, ``blocks`` or ``layers`` (see :func:`network_units`).
        bn_policy: BatchNorm in frozen units: ``frozen`` (eval mode, no gradients),
            ``affine`` (running statistics fixed, scale/shift trainable) or ``train``.
        unfreeze_milestones: epochs at which ``unfreeze_step`` more units are unfrozen.
        unfreeze_step: units unfrozen per milestone.
        unfreeze_lr_factor: newly unfrozen groups train at this fraction of the current lr.
        module_attr: the attribute holding the backbone.

    The optimiser only receives trainable parameters; later groups are added as new param
    groups, which Lightning's BaseFinetuning restores when resuming from a checkpoint.
    """

    def __init__(
        self,
        trainable_last: int = 3,
        unit: str = "children",
        bn_policy: str = "frozen",
        unfreeze_milestones: Sequence[int] = (),
        unfreeze_step: int = 1,
        unfreeze_lr_factor: float = 0.1,
        module_attr: str = "net",
    ) -> None:
        super().__init__()
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        if bn_policy not in BN_POLICIES:
            raise ValueError(f"bn_policy must be one of {BN_POLICIES}, got {bn_policy!r}")
        if trainable_last < 0 or unfreeze_step < 1:
            raise ValueError("trainable_last must be >= 0 and unfreeze_step >= 1")
        self.trainable_last = trainable_last
        self.unit = unit
        self.bn_policy = bn_policy
        self.unfreeze_milestones = sorted(int(m) for m in unfreeze_milestones)
        self.unfreeze_step = unfreeze_step
        self.unfreeze_lr_factor = unfreeze_lr_factor
        self.module_attr = module_attr
        self._frozen: list[nn.Module] = []

    def _units(self, pl_module: L.LightningModule) -> list[nn.Module]:
        return network_units(getattr(pl_module, self.module_attr), self.unit)

    def _apply_freeze(self, modules: Sequence[nn.Module]) -> None:
        self.freeze(modules, train_bn=self.bn_policy == "train")
        for module in modules:
            for bn in module.modules():
                if isinstance(bn, _BatchNorm):
                    bn.track_running_stats = True  # BaseFinetuning turns it off; keep stats
                    if self.bn_policy == "affine":
                        for p in bn.parameters(recurse=False):
                            p.requires_grad = True

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        units = self._units(pl_module)
        cut = max(0, len(units) - self.trainable_last)
        self._frozen = units[:cut]
        self._apply_freeze(self._frozen)
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in pl_module.parameters() if not p.requires_grad)
        log.info("freezing %d of %d %s: %s trainable / %s frozen parameters", cut, len(units),
                 self.unit, f"{trainable:,}", f"{frozen:,}")
        self.param_counts = {"params/trainable": float(trainable), "params/frozen": float(frozen)}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)
        for logger in trainer.loggers:
            logger.log_metrics(self.param_counts, step=0)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # Lightning switches modules to train mode each epoch: frozen statistics stay fixed
        if self.bn_policy != "train":
            for module in self._frozen:
                for bn in module.modules():
                    if isinstance(bn, _BatchNorm):
                        bn.eval()

    def finetune_function(self, pl_module: L.LightningModule, epoch: int,
                          optimizer: Optimizer) -> None:
        if epoch not in self.unfreeze_milestones or not self._frozen:
            return
        newly: list[nn.Module] = []
        with_params = 0  # parameterless units (pooling, ReLU) do not count as a step
        while self._frozen and with_params < self.unfreeze_step:
            newly.insert(0, self._frozen.pop())
            with_params += any(True for _ in newly[0].parameters())
        lr = optimizer.param_groups[0]["lr"] * self.unfreeze_lr_factor
        self.unfreeze_and_add_param_group(newly, optimizer, lr=lr, train_bn=True)
        log.info("epoch %d: unfroze %d more %s at lr %.2e", epoch, len(newly), self.unit, lr)

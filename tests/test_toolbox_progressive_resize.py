"""Progressive resizing (callbacks/progressive_resize.py): small training batches early, the full
size by the end, validation always at the full size."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from emotion_lightning.callbacks import ProgressiveResize
from emotion_lightning.callbacks.progressive_resize import progressive_size
from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.models import EmotionClassifier


def test_size_holds_ramps_and_ends_at_the_full_size():
    sizes = [progressive_size(p / 10, 64, 96, 0.2, 0.7, 8) for p in range(11)]
    assert sizes[:3] == [64, 64, 64]  # held until start_fraction
    assert sizes[7:] == [96] * 4  # full from end_fraction on
    assert sizes == sorted(sizes) and all(s % 8 == 0 for s in sizes)
    assert 64 < sizes[5] < 96  # on the ramp
    assert progressive_size(0.0, 128, 96, 0.0, 0.5, 8) == 96  # never above the data's size
    odd = [progressive_size(p / 10, 60, 96, 0.2, 0.7, 8) for p in range(11)]
    assert odd[:3] == [60, 60, 60] and min(odd) == 60  # a start off the multiple is kept
    assert all(s % 8 == 0 for s in odd[3:]) and odd == sorted(odd)


@pytest.mark.parametrize("kwargs", [dict(start_size=4), dict(start_size=64, end_fraction=0.0),
                                    dict(start_size=64, start_fraction=0.6, end_fraction=0.5)])
def test_bad_settings_are_named(kwargs):
    with pytest.raises(ValueError, match="progressive_resize"):
        ProgressiveResize(**kwargs)


class _Sizes(L.Callback):
    """The input sides the network sees in training and in validation."""

    def __init__(self) -> None:
        self.train: list[int] = []
        self.val: list[int] = []

    def on_fit_start(self, trainer, pl_module):
        net = pl_module.net

        def record(module, args):
            side = int(args[0].shape[-1])
            (self.train if module.training else self.val).append(side)

        net.register_forward_pre_hook(record)


def test_training_batches_grow_to_the_full_size_and_validation_stays_full(tmp_path):
    L.seed_everything(0)
    dm = SyntheticDataModule(classes=["happy", "sad"], num_train=64, num_val=16, num_test=16,
                             image_size=48, batch_size=8, num_workers=0)
    model = EmotionClassifier(dm.class_names, arch="resnet18", image_size=48,
                              optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01))
    sizes = _Sizes()
    trainer = L.Trainer(max_epochs=4, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0,
                        callbacks=[ProgressiveResize(start_size=24, start_fraction=0.25,
                                                     end_fraction=0.75), sizes])
    trainer.fit(model, datamodule=dm)
    steps = 4 * 8
    assert len(sizes.train) == steps
    assert sizes.train[:8] == [24] * 8  # the first quarter of the steps at start_size
    assert sizes.train[-8:] == [48] * 8  # the last quarter at the data's size
    assert sizes.train == sorted(sizes.train) and len(set(sizes.train)) >= 3
    assert set(sizes.val) == {48}
    assert model.train_input_size is None  # predict and test after the fit see the full size
    assert trainer.callback_metrics["train/input_size"] == 48.0  # the last epoch's side


def test_a_resumed_fit_logs_only_sizes_it_trained_at(tmp_path):
    dm = SyntheticDataModule(classes=["happy", "sad"], num_train=32, num_val=8, num_test=8,
                             image_size=48, batch_size=8, num_workers=0)

    def fit(epochs: int, ckpt_path=None) -> list[float]:
        L.seed_everything(0)
        model = EmotionClassifier(dm.class_names, arch="resnet18", image_size=48,
                                  optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01))
        logger = CSVLogger(tmp_path, name="csv")
        trainer = L.Trainer(max_epochs=epochs, default_root_dir=tmp_path, logger=logger,
                            enable_progress_bar=False, enable_model_summary=False,
                            num_sanity_val_steps=0, callbacks=[
                                ProgressiveResize(start_size=24, start_fraction=0.0,
                                                  end_fraction=1.0),
                                ModelCheckpoint(tmp_path / "ckpt", "last", monitor=None,
                                                save_on_train_epoch_end=False)])
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=False)
        with open(Path(logger.log_dir) / "metrics.csv") as f:
            return [float(r["train/input_size"]) for r in csv.DictReader(f)
                    if r.get("train/input_size")]

    first = fit(2)
    assert len(first) == 2 and 24 <= first[0] < first[1] < 48  # one side per epoch, growing
    # the checkpoint is saved when validation ends (conf/callbacks/last_checkpoint.yaml), before
    # the epoch's own end: a resumed fit ends that epoch again before its first training batch
    resumed = fit(3, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert len(resumed) == 1 and first[1] <= resumed[0] <= 48  # the third epoch's only


def test_a_model_without_train_input_size_is_refused(tmp_path):
    class Plain(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(max_steps=2, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[ProgressiveResize(start_size=32)])
    with pytest.raises(TypeError, match="train_input_size"):
        trainer.fit(Plain())


def test_fer7_cpu_long_resizes_progressively_and_the_other_recipes_do_not(tmp_path):
    from hydra.utils import instantiate

    from tests.conftest import compose_cfg

    cfg = compose_cfg("train", ["experiment=fer7_cpu_long",
                                "callbacks.progressive_resize.start_size=72"], tmp_path)
    assert {"prior_correction", "model_checkpoint", "progressive_resize"} <= set(cfg.callbacks)
    resize = instantiate(cfg.callbacks.progressive_resize)
    assert isinstance(resize, ProgressiveResize) and resize.start_size == 72
    assert resize.start_fraction == 0.3 and resize.end_fraction == 0.7
    off = compose_cfg("train", ["experiment=fer7_cpu_long", "callbacks=[default,prior_correction]"],
                      tmp_path)
    assert "progressive_resize" not in off.callbacks and "prior_correction" in off.callbacks
    for recipe in ("fer5_cpu", "fer7_cpu"):
        other = compose_cfg("train", [f"experiment={recipe}"], tmp_path)
        assert "progressive_resize" not in other.callbacks, recipe

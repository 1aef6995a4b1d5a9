"""The weight EMA callback (callbacks/ema.py): validated, tested and saved with the average."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from emotion_lightning.callbacks import EMA
from emotion_lightning.callbacks.ema import WarmupEMA
from emotion_lightning.models.loading import load_classifier
from emotion_lightning.models.weights import load_checkpoint_file
from tests.helpers import fit_tiny


def test_warmup_ramps_the_decay_then_holds_it():
    ema = WarmupEMA(0.99)
    assert ema.decay_at(0) == 0.1 and ema.decay_at(10_000) == 0.99
    assert WarmupEMA(0.99, warmup=False).decay_at(0) == 0.99
    averages, currents = [torch.zeros(3), torch.zeros(2)], [torch.ones(3), torch.ones(2)]
    ema(averages, currents, torch.tensor(0))  # decay 0.1: 90 % of the way
    torch.testing.assert_close(averages[1], torch.full((2,), 0.9))
    counts = [torch.tensor(100)]
    ema(counts, [torch.tensor(200)], torch.tensor(0))
    assert counts[0].dtype == torch.long and counts[0].item() == 190
    with pytest.raises(ValueError, match="decay"):
        WarmupEMA(1.0)


class _Snapshots(L.Callback):
    """The head's weights the model validates and trains with, and the raw weights at val."""

    def __init__(self, ema: EMA) -> None:
        self.ema = ema
        self.val: list[torch.Tensor] = []
        self.raw_at_val: list[torch.Tensor] = []
        self.train: list[torch.Tensor] = []

    def on_validation_epoch_start(self, trainer, pl_module):  # after EMA's swap
        if not trainer.sanity_checking:
            self.val.append(pl_module.net.fc.weight.detach().clone())
            self.raw_at_val.append(self.ema._average_model.module.net.fc.weight.detach().clone())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.append(pl_module.net.fc.weight.detach().clone())


def test_ema_validates_tests_and_saves_the_average(tmp_path):
    ema = EMA(decay=0.9)
    snapshots = _Snapshots(ema)
    trainer, model, dm = fit_tiny(tmp_path, [ema, snapshots], epochs=2)
    assert len(snapshots.val) == 2
    # validation sees the average, which differs from the raw weights
    assert not torch.allclose(snapshots.val[0], snapshots.raw_at_val[0])
    # ... and training goes on with the raw weights
    torch.testing.assert_close(snapshots.train[3], snapshots.raw_at_val[0])
    # the checkpoint holds the average as its weights, the raw ones beside them
    saved = load_checkpoint_file(tmp_path / "last.ckpt")
    torch.testing.assert_close(saved["state_dict"]["net.fc.weight"], snapshots.val[1])
    torch.testing.assert_close(saved["current_model_state"]["net.fc.weight"],
                               snapshots.raw_at_val[1])
    # the fitted model ends with the average; test on the checkpoint keeps it
    torch.testing.assert_close(model.net.fc.weight, snapshots.val[1])
    trainer.test(model, datamodule=dm, ckpt_path=str(tmp_path / "last.ckpt"))
    torch.testing.assert_close(model.net.fc.weight, snapshots.val[1])
    loaded = load_classifier(tmp_path / "last.ckpt")
    torch.testing.assert_close(loaded.net.fc.weight, snapshots.val[1])


def test_ema_config_composes_beside_the_default_callbacks(tmp_path):
    from hydra.utils import instantiate

    from tests.conftest import compose_cfg

    cfg = compose_cfg("train", ["callbacks=[default,ema]", "callbacks.ema.decay=0.99"], tmp_path)
    assert "model_checkpoint" in cfg.callbacks
    ema = instantiate(cfg.callbacks.ema)
    assert isinstance(ema, EMA) and ema._kwargs["multi_avg_fn"].decay == 0.99


def test_an_ema_that_starts_late_validates_the_raw_weights_until_then(tmp_path):
    ema = EMA(decay=0.9, start_step=100)  # never reached in 2 epochs of 3 steps
    snapshots = _Snapshots(ema)
    _, model, _ = fit_tiny(tmp_path, [ema, snapshots], epochs=2)
    initial = ema._average_model.module.net.fc.weight  # the copy made at setup, never updated
    assert not torch.allclose(snapshots.val[0], initial)  # not the initial weights swapped in
    torch.testing.assert_close(snapshots.val[1], model.net.fc.weight)  # the raw weights

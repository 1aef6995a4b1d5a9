"""A refit on all of Training (FER's ``data.val_fraction=0``): no validation split, the
checkpoints follow the epochs, the last epoch is tested."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from omegaconf import open_dict

from emotion_lightning.cli.train import callbacks_without_validation, main, train
from emotion_lightning.data import FERDataModule
from tests.conftest import compose_cfg, one_torch_thread


def test_val_fraction_zero_trains_on_all_of_training(fer_folder):
    held_out = FERDataModule(fer_folder, cache_dir=None, drop_blank=False, val_fraction=0.25)
    refit = FERDataModule(fer_folder, cache_dir=None, drop_blank=False, val_fraction=0.0)
    held_out.setup("fit")
    refit.setup("fit")
    total = len(held_out.datasets["train"]) + len(held_out.datasets["val"])
    assert len(refit.datasets["train"]) == total == 38  # the five classes' Training faces
    assert held_out.has_validation() and not refit.has_validation()
    assert refit.val_dataloader() == []
    refit.setup("test")
    held_out.setup("test")
    assert len(refit.datasets["test"]) == len(held_out.datasets["test"]) == 12
    with pytest.raises(ValueError,
                       match=r"no samples in split\(s\) \['val'\] \(data.val_fraction=0"):
        FERDataModule(fer_folder, cache_dir=None, val_fraction=0.0).setup("validate")


def test_val_fraction_zero_keeps_publictest_as_validation_beside_privatetest(fer_csv):
    dm = FERDataModule(fer_csv, cache_dir=None, drop_blank=False, val_fraction=0.0)
    assert dm.has_validation()  # PrivateTest is the test split, PublicTest validates


def test_callbacks_without_validation(tmp_path):
    cfg = compose_cfg("train", ["experiment=fer7_cpu_long"], tmp_path)
    kept = callbacks_without_validation(cfg.callbacks)
    assert "early_stopping" in cfg.callbacks and "prior_correction" in cfg.callbacks
    assert "early_stopping" not in kept and "prior_correction" not in kept
    assert "progressive_resize" in kept and "interrupted_checkpoint" in kept
    for name in ("model_checkpoint", "last_checkpoint"):
        assert kept[name].monitor is None and kept[name].save_on_train_epoch_end is True
        assert cfg.callbacks[name].save_on_train_epoch_end is False  # the run's config is kept


@pytest.mark.slow
def test_refit_tests_the_last_epoch_and_returns_no_sweep_value(fer_folder, tmp_path, caplog):
    run = tmp_path / "run"
    overrides = ["experiment=fer7_cpu", f"data.root={fer_folder}", "data.val_fraction=0",
                 "data.batch_size=16", "data.num_workers=0", "data.image_size=48",
                 "trainer.max_time=00:00:05:00", "trainer.max_epochs=2", "trainer.precision=32",
                 "model.prior_tau=0.3", "logger=csv"]
    cfg = compose_cfg("train", overrides, run)
    with caplog.at_level(logging.WARNING), one_torch_thread():
        _, objects = train(cfg)
    assert "callbacks.prior_correction (PriorCorrection) is left out" in caplog.text
    written = json.loads((run / "metrics.json").read_text())
    assert not any(key.startswith(("val/", "prior/")) for key in written)
    assert written["best_ckpt"].endswith("epoch_001.ckpt")  # the second (last) epoch
    assert (run / "checkpoints" / "last.ckpt").is_file()
    saved = torch.load(written["best_ckpt"], map_location="cpu", weights_only=True)
    assert saved["epoch"] == 1 and saved["hyper_parameters"]["prior_tau"] == 0.3
    assert 0 <= written["test/acc"] <= 1 and objects["trainer"].current_epoch == 2
    assert objects["datamodule"].has_validation() is False
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "again")
    with one_torch_thread():
        assert main.__wrapped__(cfg) is None  # optimized_metric val/acc: nothing to return

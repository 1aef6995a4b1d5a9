"""Time-budgeted training, precision=auto, images/s, and the CPU recipes' training settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from emotion_lightning import runtime
from emotion_lightning.cli.common import resolve_precision
from emotion_lightning.cli.train import train
from emotion_lightning.data.presets import GrayPreset
from emotion_lightning.models import EmotionClassifier
from emotion_lightning.models.schedules import (
    scheduler_config,
    time_budget_progress,
    warmup_cosine,
    warmup_cosine_factor,
    warmup_cosine_time,
)
from tests.conftest import CLASSES, compose_cfg


def test_warmup_cosine_factor_shape():
    assert warmup_cosine_factor(0.0, 0.04, 0.0) == 0.0
    assert warmup_cosine_factor(0.02, 0.04, 0.0) == pytest.approx(0.5)
    assert warmup_cosine_factor(0.04, 0.04, 0.0) == pytest.approx(1.0)
    assert warmup_cosine_factor(0.52, 0.04, 0.0) == pytest.approx(0.5)
    assert warmup_cosine_factor(1.0, 0.04, 0.0) == pytest.approx(0.0)
    assert warmup_cosine_factor(3.0, 0.04, 0.1) == pytest.approx(0.1)  # past the budget: floor


def test_step_schedule_unchanged():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = warmup_cosine(opt, total_steps=100, warmup_fraction=0.1, min_factor=0.0)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 11) and lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.5) and lrs[-1] < 0.001


def test_time_schedule_follows_the_clock():
    clock = {"t": 0.0}
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = warmup_cosine_time(opt, progress=lambda: clock["t"], warmup_fraction=0.1)
    for t, expected in [(0.05, 0.05), (0.1, 0.1), (0.55, 0.05), (1.0, 0.0)]:
        clock["t"] = t
        opt.step()
        sched.step()
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-9)


def test_time_budget_without_max_time_is_a_clear_error():
    class NoTimer:
        callbacks: list = []

    with pytest.raises(ValueError, match="trainer.max_time"):
        time_budget_progress(NoTimer())


def test_scheduler_interval_says_how_the_factory_is_called():
    from functools import partial

    class Trainer:
        estimated_stepping_batches = 40

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    steps = scheduler_config(partial(warmup_cosine, warmup_fraction=0.25), opt, "step", Trainer())
    assert steps["interval"] == "step" and opt.param_groups[0]["lr"] == pytest.approx(1 / 11)
    epochs = scheduler_config(partial(torch.optim.lr_scheduler.StepLR, step_size=2), opt, "epoch",
                              Trainer())
    assert epochs["interval"] == "epoch"
    with pytest.raises(TypeError, match="scheduler_interval=step .* total_steps"):
        scheduler_config(partial(torch.optim.lr_scheduler.StepLR, step_size=2), opt, "step",
                         Trainer())
    with pytest.raises(ValueError, match="scheduler_interval"):
        EmotionClassifier(CLASSES, scheduler_interval="batch")


@pytest.mark.parametrize(("flags", "expected"), [({"avx512_bf16"}, "bf16-mixed"),
                                                 ({"amx_bf16", "avx2"}, "bf16-mixed"),
                                                 ({"avx2", "avx512f"}, "32-true")])
def test_auto_precision_on_cpu(monkeypatch, flags, expected):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    precision, reason = runtime.auto_precision("cpu")
    assert precision == expected and "CPU" in reason


def test_precision_auto_resolved_and_logged(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: set())
    cfg = compose_cfg("train", ["experiment=fer5_cpu", "trainer.accelerator=cpu"], tmp_path)
    assert cfg.trainer.precision == "auto"
    with caplog.at_level("INFO"):
        resolve_precision(cfg.trainer)
    assert cfg.trainer.precision == "32-true"
    assert "precision=auto -> 32-true" in caplog.text


def test_pad_crop_shifts_within_the_padding():
    image = np.zeros((48, 48), np.uint8)
    image[20:28, 20:28] = 255
    preset = GrayPreset(48, train=True, pad_crop=4, affine_p=0.0, hflip=0.0)
    for _ in range(20):
        out = preset(image)[0].numpy()
        ys, xs = np.nonzero(out > out.min())
        assert out.shape == (48, 48) and len(ys) == 64  # the square, whole, shifted by <= 4 px
        assert 16 <= ys.min() <= 24 and 16 <= xs.min() <= 24


def test_no_weight_decay_on_norm_and_bias():
    model = EmotionClassifier(CLASSES, arch="resnet18", decay_norm_and_bias=False,
                              optimizer=lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=5e-4))
    opt = model.configure_optimizers()  # no scheduler: the optimizer itself
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    bn = model.net.bn1.weight
    assert any(p is bn for p in no_decay["params"])
    total = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == total


def test_fer5_cpu_time_budget_ends_annealed(tmp_path, fer_folder):
    """``trainer.max_time`` alone rescales the recipe; it tests and records seconds and lr."""
    cfg = compose_cfg("train", ["experiment=fer5_cpu", f"data.root={fer_folder}",
                                "trainer.max_time=00:00:00:06", "data.batch_size=8",
                                "data.image_size=48", "data.num_workers=0", "logger=csv"], tmp_path)
    metrics, objects = train(cfg)
    assert metrics["lr/peak"] == pytest.approx(0.1)
    assert metrics["lr/final"] <= 0.02 * metrics["lr/peak"]
    assert 6 <= metrics["train/seconds"] < 60
    assert "test/acc" in metrics and "test/balanced_acc" in metrics
    assert metrics["train/img_per_s"] > 0 and metrics["precision"] in ("bf16-mixed", "32-true")
    assert objects["trainer"].global_step > 2  # several steps, not one epoch's worth forced
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_fer5_cpu_without_a_budget_fails_clearly(tmp_path, fer_folder):
    cfg = compose_cfg("train", ["experiment=fer5_cpu", f"data.root={fer_folder}",
                                "trainer.max_time=null", "data.batch_size=8", "data.image_size=48",
                                "trainer.max_epochs=1"], tmp_path)
    with open_dict(cfg):
        cfg.trainer.precision = "32-true"
    with pytest.raises(ValueError, match="needs a time budget: set trainer.max_time"):
        train(cfg)


def test_fer_cpu_search_composes_on_short_budgets():
    from hydra import compose, initialize_config_dir

    from emotion_lightning.cli import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["experiment=fer5_cpu", "hparams_search=fer_cpu"],
                      return_hydra_config=True)
    assert cfg.trainer.max_time == "00:00:08:00" and cfg.test is False
    assert cfg.model.scheduler._target_.endswith("warmup_cosine_time")
    assert {"model.optimizer.lr", "data.image_size", "data.augmentation.pad_crop"} <= set(
        cfg.hydra.sweeper.params)


def test_resume_keeps_the_time_already_spent(tmp_path, fer_folder):
    """The budget lives in the checkpoint (Lightning's Timer): resuming a spent budget trains
    no further, instead of starting a fresh warm-up and cosine."""
    overrides = ["experiment=fer5_cpu", f"data.root={fer_folder}", "trainer.max_time=00:00:00:04",
                 "data.batch_size=8", "data.image_size=48", "data.num_workers=0", "logger=csv",
                 "test=false"]
    first, objects = train(compose_cfg("train", overrides, tmp_path / "a"))
    steps = objects["trainer"].global_step
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    blob = torch.load(last, weights_only=True)
    assert any("Timer" in key for key in blob["callbacks"])
    again, objects = train(compose_cfg("train", [*overrides, f"ckpt_path={last}"], tmp_path / "b"))
    # no fresh budget (that would about double the steps): the Timer stops the resumed run
    # within its first few batches, in far less time
    assert 0 < objects["trainer"].global_step <= steps + 5
    assert again["train/seconds"] < first["train/seconds"]

"""Self-distillation (callbacks/self_distillation.py): from a share of the fit on, the model's own
softened predictions of the training faces join the targets, and the DataLoader workers see
them."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from emotion_lightning.callbacks import SelfDistillation
from emotion_lightning.callbacks import self_distillation as module
from emotion_lightning.cli.common import instantiate_group
from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.data.base import SoftTargetDataset
from emotion_lightning.models import EmotionClassifier
from tests.conftest import compose_cfg, one_torch_thread


@pytest.mark.parametrize("kwargs", [dict(start_fraction=1.0), dict(every_n_epochs=0),
                                    dict(weight=0.0), dict(weight=1.5), dict(temperature=0.0)])
def test_bad_settings_are_named(kwargs):
    with pytest.raises(ValueError, match="self_distillation needs"):
        SelfDistillation(**kwargs)


def test_every_unmet_setting_is_named_at_once():
    with pytest.raises(ValueError, match=r"weight in \(0, 1\], temperature > 0; got .*weight=0"):
        SelfDistillation(weight=0, temperature=-1)


class _Targets(L.Callback):
    """The targets of every training batch, by epoch."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, list[torch.Tensor]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.by_epoch.setdefault(trainer.current_epoch, []).append(batch[1].clone())


def _fit(tmp_path, data, monkeypatch, max_steps=-1, **kwargs):
    refreshes = []
    original = module.soft_labels

    def spy(*args, **kw):
        own = original(*args, **kw)
        refreshes.append(own)
        return own

    monkeypatch.setattr(module, "soft_labels", spy)
    L.seed_everything(0)
    model = EmotionClassifier(data.class_names, arch="resnet18", image_size=48,
                              optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01))
    targets = _Targets()
    trainer = L.Trainer(max_epochs=4, max_steps=max_steps, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, accelerator="cpu",
                        callbacks=[SelfDistillation(**kwargs), targets])
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
    return model, trainer, targets.by_epoch, refreshes


def test_own_labels_join_the_targets_from_start_fraction_and_reach_the_workers(tmp_path,
                                                                                monkeypatch):
    data = SyntheticDataModule(classes=["happy", "sad", "angry"], num_train=32, num_val=8,
                               num_test=8, image_size=48, batch_size=8, num_workers=2)
    model, trainer, by_epoch, refreshes = _fit(tmp_path, data, monkeypatch, start_fraction=0.5,
                                               every_n_epochs=1, weight=0.8, temperature=2.0)
    train = data.datasets["train"]
    assert isinstance(train, SoftTargetDataset)
    onehot = torch.eye(3)[torch.as_tensor(train.labels)]
    # epochs 0-1 (progress < 0.5) train on the labels, one-hot; epochs 2 and 3 refresh
    assert len(refreshes) == 2
    for epoch in (0, 1):
        assert all(((y == 0) | (y == 1)).all() and (y.sum(1) == 1).all() for y in by_epoch[epoch])
    own = torch.from_numpy(refreshes[-1])
    assert own.shape == (32, 3) and torch.allclose(own.sum(1), torch.ones(32))
    weight = 0.8 * 0.75  # the last refresh: at the start of epoch 3 of 4 (progress by steps)
    torch.testing.assert_close(train.targets, (1 - weight) * onehot + weight * own)
    # the persistent DataLoader workers delivered the rewritten rows, not the labels
    last = torch.cat(by_epoch[3])
    assert (last.amax(1) < 1).all()
    rows = {tuple(r) for r in train.targets.numpy().round(5).tolist()}
    assert all(tuple(r) in rows for r in last.numpy().round(5).tolist())
    assert trainer.callback_metrics["self_distill/weight"] == pytest.approx(weight)
    assert 0.0 <= float(trainer.callback_metrics["self_distill/agreement"]) <= 1.0
    assert model.training  # the refresh put the model back in training mode


def test_a_teachers_soft_labels_stay_the_base_and_refreshes_keep_their_spacing(tmp_path,
                                                                               monkeypatch):
    data = SyntheticDataModule(classes=["happy", "sad"], num_train=16, num_val=8, num_test=8,
                               image_size=48, batch_size=8, num_workers=0)
    faces, labels = data.train_faces()
    base = np.full((len(labels), 2), 0.5, np.float32)
    data.set_train_targets(base)  # e.g. offline distillation's soft labels
    _, _, _, refreshes = _fit(tmp_path, data, monkeypatch, start_fraction=0.0,
                              every_n_epochs=3, weight=0.5, temperature=1.0)
    assert len(refreshes) == 2  # epochs 0 and 3
    weight = 0.5 * 0.75
    expected = (1 - weight) * torch.from_numpy(base) + weight * torch.from_numpy(refreshes[-1])
    torch.testing.assert_close(data.datasets["train"].targets, expected)


def test_no_refresh_starts_an_epoch_the_fit_will_not_finish(tmp_path, monkeypatch):
    data = SyntheticDataModule(classes=["happy", "sad"], num_train=32, num_val=8, num_test=8,
                               image_size=48, batch_size=8, num_workers=0)
    # 4 steps an epoch, 14 steps: epoch 3 starts at 12/14 and would need 4 more
    _, trainer, by_epoch, refreshes = _fit(tmp_path, data, monkeypatch, max_steps=14,
                                           start_fraction=0.5, every_n_epochs=1)
    assert trainer.global_step == 14 and len(by_epoch[3]) == 2
    assert len(refreshes) == 1  # epoch 2 (8/14) only
    weight = 0.8 * 8 / 14
    assert trainer.callback_metrics["self_distill/weight"] == pytest.approx(weight)


def test_the_device_loader_is_refused(tmp_path, monkeypatch):
    data = SyntheticDataModule(classes=["happy", "sad"], num_train=16, num_val=8, num_test=8,
                               image_size=48, batch_size=8, num_workers=0, loader="device")
    with pytest.raises(ValueError, match="data.loader=workers"):
        _fit(tmp_path, data, monkeypatch)


def test_the_config_option_builds_the_callback(tmp_path):
    cfg = compose_cfg("train", ["experiment=fer7_cpu_long", "callbacks=[default,prior_correction,"
                                "progressive_resize,self_distillation]",
                                "callbacks.self_distillation.every_n_epochs=3"], tmp_path)
    built = [c for c in instantiate_group(cfg.callbacks) if isinstance(c, SelfDistillation)]
    assert len(built) == 1
    assert (built[0].start_fraction, built[0].every_n_epochs, built[0].weight,
            built[0].temperature) == (0.7, 3, 0.8, 2.0)

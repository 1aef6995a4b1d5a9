"""Deferred re-weighting (callbacks/deferred_reweighting.py): the plain loss first, balanced
class weights for the last part of the fit."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from emotion_lightning.callbacks import DeferredReweighting
from emotion_lightning.models import EmotionClassifier
from tests.conftest import ImbalancedSynthetic, compose_cfg


class _Weights(L.Callback):
    """The loss's class weights at every training step."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(pl_module.class_weight.clone())


def _fit(tmp_path, callbacks, epochs: int = 4, ckpt_path=None, **model_kwargs
         ) -> EmotionClassifier:
    # 24 happy, 12 sad, 6 surprise in batches of 16 (the last, short one dropped): 2 steps an epoch
    dm = ImbalancedSynthetic([24, 12, 6], classes=["happy", "sad", "surprise"], num_train=72,
                             num_val=12, num_test=12, batch_size=16, num_workers=0)
    L.seed_everything(0)
    model = EmotionClassifier(dm.class_names, arch="resnet18", image_size=48,
                              optimizer=lambda ps: torch.optim.SGD(ps, lr=0.01), **model_kwargs)
    trainer = L.Trainer(max_epochs=epochs, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0, callbacks=callbacks)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path, weights_only=False)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    model.logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return model


def test_weights_switch_to_balanced_at_the_start_fraction(tmp_path):
    weights = _Weights()
    model = _fit(tmp_path, [DeferredReweighting(start_fraction=0.5), weights])
    balanced = torch.tensor([42 / 72, 42 / 36, 42 / 18])  # N / (C * count)
    assert len(weights.seen) == 8
    for step, seen in enumerate(weights.seen):  # steps 0-3 plain, 4-7 (progress >= 0.5) weighted
        torch.testing.assert_close(seen, balanced if step >= 4 else torch.ones(3), msg=str(step))
    torch.testing.assert_close(model.class_weight, balanced)  # kept: the model ends trained so
    # the prior the loss saw last, which prior correction divides by, is now uniform
    torch.testing.assert_close(model.log_prior, torch.full((3,), math.log(1 / 3)))
    assert model.logged["train/reweighted"] == 1.0


def test_a_resumed_fit_is_weighted_from_where_its_progress_is(tmp_path):
    _fit(tmp_path, [DeferredReweighting(start_fraction=0.99)], epochs=2)  # 4 plain steps
    weights = _Weights()
    # resumed to 4 epochs: its 5th of 8 steps is already at half of the fit
    model = _fit(tmp_path, [DeferredReweighting(start_fraction=0.5), weights], epochs=4,
                 ckpt_path=tmp_path / "last.ckpt")
    balanced = torch.tensor([42 / 72, 42 / 36, 42 / 18])
    assert len(weights.seen) == 4
    assert all(torch.allclose(seen, balanced) for seen in weights.seen)
    torch.testing.assert_close(model.class_weight, balanced)


def test_without_the_callback_the_loss_stays_plain(tmp_path):
    weights = _Weights()
    model = _fit(tmp_path, [weights])
    assert all(torch.equal(seen, torch.ones(3)) for seen in weights.seen)
    assert model.log_prior.argmax() == 0  # happy, the commonest class
    assert "train/reweighted" not in model.logged


def test_a_model_weighted_from_the_start_is_refused(tmp_path):
    with pytest.raises(ValueError, match="deferred_reweighting with model.class_weights=balanced"):
        _fit(tmp_path, [DeferredReweighting()], class_weights="balanced")


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_a_start_outside_the_fit_is_named(fraction):
    with pytest.raises(ValueError, match="deferred_reweighting.start_fraction"):
        DeferredReweighting(start_fraction=fraction)


def test_the_recipes_take_it_from_the_command_line(tmp_path):
    cfg = compose_cfg("train", ["experiment=fer5_cpu",
                                "callbacks=[default,prior_correction,deferred_reweighting]",
                                "callbacks.deferred_reweighting.start_fraction=0.8"], tmp_path)
    callback = instantiate(cfg.callbacks.deferred_reweighting)
    assert isinstance(callback, DeferredReweighting) and callback.start_fraction == 0.8
    assert "prior_correction" in cfg.callbacks and cfg.model.class_weights is None

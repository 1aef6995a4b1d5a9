"""Stochastic weight averaging (callbacks/weight_averaging.py): the equal mean of the weights
from start_fraction of the fit on, validated, tested and saved like the EMA."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from emotion_lightning.callbacks import EMA, SWA
from emotion_lightning.models.weights import load_checkpoint_file
from tests.helpers import fit_tiny


class _Weights(L.Callback):
    """The head's weights after each optimizer step and the ones each validation sees."""

    def __init__(self) -> None:
        self.after_step: list[torch.Tensor] = []
        self.val: list[torch.Tensor] = []
        self.raw_before_val: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_step.append(pl_module.net.fc.weight.detach().clone())

    def on_validation_epoch_start(self, trainer, pl_module):  # after the average's swap
        if not trainer.sanity_checking:
            self.val.append(pl_module.net.fc.weight.detach().clone())
            self.raw_before_val.append(self.after_step[-1])


def test_swa_averages_the_weights_of_the_fits_end_equally(tmp_path):
    swa, weights = SWA(start_fraction=0.5), _Weights()
    trainer, model, dm = fit_tiny(tmp_path, [swa, weights])  # 4 epochs of 3 steps
    steps = weights.after_step
    assert len(steps) == 12
    mean = torch.stack(steps[5:]).mean(0)  # the steps from 6 of 12 on (progress >= 0.5)
    torch.testing.assert_close(model.net.fc.weight, mean)
    assert int(swa._average_model.n_averaged) == 7
    # the first validation precedes the average: it sees the raw weights, not the initial ones
    torch.testing.assert_close(weights.val[0], weights.raw_before_val[0])
    torch.testing.assert_close(weights.val[2], torch.stack(steps[5:9]).mean(0))
    torch.testing.assert_close(weights.val[3], mean)  # the last sees the whole average
    assert not torch.allclose(weights.val[3], weights.raw_before_val[3])
    early = load_checkpoint_file(tmp_path / "e0.ckpt")  # saved before the average began
    assert "current_model_state" not in early
    torch.testing.assert_close(early["state_dict"]["net.fc.weight"], weights.raw_before_val[0])
    last = load_checkpoint_file(tmp_path / "last.ckpt")
    torch.testing.assert_close(last["state_dict"]["net.fc.weight"], mean)
    torch.testing.assert_close(last["current_model_state"]["net.fc.weight"], steps[-1])
    trainer.test(model, datamodule=dm, ckpt_path=str(tmp_path / "last.ckpt"))
    torch.testing.assert_close(model.net.fc.weight, mean)  # test keeps the average


def test_swa_every_n_steps_averages_fewer_weights(tmp_path):
    swa = SWA(start_fraction=0.0, every_n_steps=4)
    fit_tiny(tmp_path, [swa], epochs=2)  # steps 0..5 (zero-based): 0 and 4
    assert int(swa._average_model.n_averaged) == 2


def test_one_weight_average_per_trainer(tmp_path):
    with pytest.raises(ValueError, match="one weight average"):
        fit_tiny(tmp_path, [SWA(), EMA()], epochs=1)


@pytest.mark.parametrize("kwargs", [dict(start_fraction=1.0), dict(start_fraction=-0.1),
                                    dict(every_n_steps=0)])
def test_bad_settings_are_named(kwargs):
    with pytest.raises(ValueError, match="callbacks.swa"):
        SWA(**kwargs)


def test_swa_config_composes_beside_the_default_callbacks(tmp_path):
    from hydra.utils import instantiate

    from tests.conftest import compose_cfg

    cfg = compose_cfg("train", ["callbacks=[default,prior_correction,swa]",
                                "callbacks.swa.start_fraction=0.6"], tmp_path)
    assert "model_checkpoint" in cfg.callbacks and "prior_correction" in cfg.callbacks
    swa = instantiate(cfg.callbacks.swa)
    assert isinstance(swa, SWA) and swa.start_fraction == 0.6

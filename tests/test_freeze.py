"""Freezing all but the last N units: which parameters train, BatchNorm policy, unfreezing."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from emotion_lightning.callbacks import FreezeAllButLastN, network_units
from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.models import EmotionClassifier, FerVGG, build_gray_resnet


@pytest.mark.parametrize(("unit", "count"), [("children", 10), ("blocks", 10), ("layers", 41)])
def test_units_of_resnet18(unit, count):
    assert len(network_units(build_gray_resnet("resnet18", 5), unit)) == count


def test_the_fer_vgg_freezes_by_its_conv_stages():
    net = FerVGG(5)
    blocks = network_units(net, "blocks")
    assert blocks[:4] == list(net.features) and blocks[4:] == [net.classifier, net.fc]
    model = EmotionClassifier(["angry", "happy"], arch="vgg_fer")
    FreezeAllButLastN(3, unit="blocks").freeze_before_training(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("net.features.3.", "net.classifier.", "net.fc."))
                             for n in trainable)
    assert "net.features.3.0.weight" in trainable and "net.features.2.0.weight" not in trainable


def _fit(tmp_path, callback, epochs=1, ckpt_path=None):
    dm = SyntheticDataModule(num_train=64, num_val=16, num_test=16, batch_size=16, num_workers=0)
    model = EmotionClassifier(dm.class_names, arch="resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[callback, L.pytorch.callbacks.ModelCheckpoint(
                            dirpath=tmp_path, save_last=True)])
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    changed = {k for k, v in model.state_dict().items()  # log_prior: the data's, not a weight
               if k in before and k != "log_prior" and not torch.equal(v, before[k])}
    return model, trainer, changed


def test_children_recipe_trains_only_layer4_and_fc(tmp_path):
    model, trainer, changed = _fit(tmp_path, FreezeAllButLastN(3, unit="children"))
    assert changed and all(k.startswith(("net.layer4.", "net.fc.")) for k in changed), changed
    assert any(k.endswith("running_mean") for k in changed)  # layer4's BN still learns
    optimised = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert optimised == trainable
    assert all(not p.requires_grad for p in model.net.layer3.parameters())


def test_affine_policy_trains_scale_but_not_statistics(tmp_path):
    _, _, changed = _fit(tmp_path, FreezeAllButLastN(1, unit="children", bn_policy="affine"))
    assert "net.bn1.weight" in changed and "net.layer1.0.bn1.bias" in changed
    assert not any(k.endswith(("running_mean", "running_var")) and not k.startswith("net.fc")
                   for k in changed)
    assert not any(k.endswith("conv1.weight") for k in changed)


def test_layers_unit_and_zero_trainable(tmp_path):
    _, _, changed = _fit(tmp_path, FreezeAllButLastN(3, unit="layers"))
    # the last three parameterised leaves of resnet18: layer4.1.conv2, layer4.1.bn2, fc
    prefixes = ("net.layer4.1.conv2.", "net.layer4.1.bn2.", "net.fc.")
    assert changed and all(k.startswith(prefixes) for k in changed), changed


def test_gradual_unfreezing_adds_param_groups_and_resumes(tmp_path):
    callback = FreezeAllButLastN(1, unit="children", unfreeze_milestones=[1], unfreeze_lr_factor=0.5)
    model, trainer, changed = _fit(tmp_path, callback, epochs=2)
    groups = trainer.optimizers[0].param_groups
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(groups[0]["lr"] * 0.5, rel=0.5)
    assert all(p.requires_grad for p in model.net.layer4.parameters())
    assert any(k.startswith("net.layer4.") for k in changed)
    assert not any(k.startswith("net.layer3.") for k in changed)
    # resuming restores both param groups
    resumed = FreezeAllButLastN(1, unit="children", unfreeze_milestones=[1])
    _, trainer2, _ = _fit(tmp_path / "r", resumed, epochs=3, ckpt_path=str(tmp_path / "last.ckpt"))
    assert len(trainer2.optimizers[0].param_groups) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="unit"):
        FreezeAllButLastN(unit="rows")
    with pytest.raises(ValueError, match="bn_policy"):
        FreezeAllButLastN(bn_policy="maybe")

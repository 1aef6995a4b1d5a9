"""Backbone registry, weights loading, and the classifier's checkpoints."""

from __future__ import annotations

import sys
from urllib.error import URLError

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torchvision import models

from emotion_lightning.callbacks import ClassificationReport
from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.models import (
    EmotionClassifier,
    build_gray_resnet,
    create_backbone,
    list_backbones,
    register_backbone,
    unregister_backbone,
)
from emotion_lightning.models import weights as weights_module
from tests.conftest import ImbalancedSynthetic


@pytest.mark.parametrize("name", list_backbones())
def test_every_registered_backbone_takes_gray_input(name):
    net = create_backbone(name, num_classes=3).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 48, 48)).shape == (2, 3)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="resnet18"):
        create_backbone("vgg_nonexistent", 5)


def test_register_custom_backbone():
    @register_backbone("tiny_test_net")
    def tiny(num_classes, conv1_init="random", weights=None):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(num_classes))

    try:
        assert "tiny_test_net" in list_backbones()
        model = EmotionClassifier(["a", "b"], arch="tiny_test_net")
        assert model(torch.randn(1, 1, 8, 8)).shape == (1, 2)
        with pytest.raises(ValueError, match="already registered"):
            register_backbone("tiny_test_net")(tiny)
    finally:
        assert unregister_backbone("tiny_test_net") is tiny
    assert "tiny_test_net" not in list_backbones()  # no test leaves a backbone behind
    with pytest.raises(KeyError, match="not registered"):
        unregister_backbone("tiny_test_net")


def test_rgb_sum_from_local_rgb_weights_is_exact_on_equal_channels(tmp_path):
    rgb = models.resnet18(num_classes=1000).eval()
    path = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), path)
    gray = build_gray_resnet("resnet18", 1000, conv1_init="rgb_sum", weights=str(path)).eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)
    # a new head of another size is freshly initialised, the rest still loads
    five = build_gray_resnet("resnet18", 5, conv1_init="random", weights=str(path))
    torch.testing.assert_close(five.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight)


def test_imagenet_offline_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_network(self, *args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(models.WeightsEnum, "get_state_dict", no_network)
    with pytest.raises(RuntimeError, match=r"(?s)resnet50.*download.pytorch.org.*hub/checkpoints"):
        build_gray_resnet("resnet50", 5, weights="imagenet")


def test_imagenet_weights_come_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    url = models.get_model_weights("resnet18").DEFAULT.url
    target = weights_module.hub_checkpoint_path(url)
    target.parent.mkdir(parents=True)
    reference = models.resnet18()
    torch.save(reference.state_dict(), target)
    net = build_gray_resnet("resnet18", 5, conv1_init="rgb_sum", weights="imagenet")
    torch.testing.assert_close(net.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))


def test_bad_weight_arguments():
    with pytest.raises(ValueError, match="rgb_sum"):
        build_gray_resnet("resnet18", 5, conv1_init="rgb_sum")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_gray_resnet("resnet18", 5, weights="missing.pth")
    with pytest.raises(ValueError, match="class_weights"):
        EmotionClassifier(["a", "b"], class_weights="inverse")


def _fit_tiny(tmp_path, dm=None, **model_kwargs) -> tuple[EmotionClassifier, L.Trainer,
                                                           SyntheticDataModule]:
    if dm is None:
        dm = SyntheticDataModule(classes=["happy", "sad", "surprise"], num_train=48, num_val=24,
                                 num_test=24, batch_size=16, num_workers=0)
    model = EmotionClassifier(dm.class_names, arch="resnet18", **model_kwargs)
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path),
                                   ClassificationReport()])
    trainer.fit(model, datamodule=dm)
    return model, trainer, dm


def test_report_under_fast_dev_run_writes_its_files_without_wandb(tmp_path, monkeypatch):
    """fast_dev_run swaps the logger for a stand-in that answers every attribute: the report
    must not take it for W&B (that imported wandb, which a csv-logged run need not have)."""
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    dm = SyntheticDataModule(classes=["happy", "sad"], num_train=8, num_val=8, num_test=8,
                             batch_size=4, num_workers=0)
    model = EmotionClassifier(dm.class_names, arch="resnet18")
    trainer = L.Trainer(fast_dev_run=True, default_root_dir=tmp_path, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[ClassificationReport()])
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm)
    assert (tmp_path / "test_confusion_matrix.csv").is_file()


def test_checkpoint_round_trip_is_self_describing(tmp_path):
    # 24 happy, 12 sad, 6 surprise: balanced weights N / (C * count) = 42 / (3 * count)
    dm = ImbalancedSynthetic([24, 12, 6], classes=["happy", "sad", "surprise"], num_train=72,
                             num_val=24, num_test=24, batch_size=16, num_workers=0)
    model, trainer, dm = _fit_tiny(tmp_path, dm, class_weights="balanced", label_smoothing=0.1)
    expected = torch.tensor([42 / 72, 42 / 36, 42 / 18])
    assert dm.class_counts("train") == [24, 12, 6]
    torch.testing.assert_close(model.class_weight, expected)
    # the weights reach the training loss
    logits, y = torch.tensor([[2.0, 0, 0], [0, 1, 0], [1, 0, -1]]), torch.tensor([0, 1, 2])
    weighted = F.cross_entropy(logits, y, weight=expected, label_smoothing=0.1)
    torch.testing.assert_close(model._loss(logits, y), weighted)
    assert not torch.isclose(weighted, F.cross_entropy(logits, y, label_smoothing=0.1))
    path = trainer.checkpoint_callback.best_model_path
    loaded = EmotionClassifier.load_from_checkpoint(path, map_location="cpu").eval()
    assert loaded.class_names == ["happy", "sad", "surprise"]
    assert loaded.hparams.image_size == 48
    x = torch.randn(3, 1, 48, 48)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    torch.testing.assert_close(loaded.class_weight, expected)  # saved with the model
    assert (tmp_path / "val_confusion_matrix.png").is_file()  # ClassificationReport's
    assert (tmp_path / "val_confusion_matrix.csv").read_text().startswith("true\\pred,happy")


def test_checkpoint_of_a_pretrained_model_loads_without_the_weights_file(tmp_path):
    init = tmp_path / "init.pth"
    torch.save(build_gray_resnet("resnet18", 3).state_dict(), init)
    _, trainer, _ = _fit_tiny(tmp_path, weights=str(init))
    init.unlink()
    path = trainer.checkpoint_callback.best_model_path
    loaded = EmotionClassifier.load_from_checkpoint(path, map_location="cpu")
    assert loaded.hparams.weights is None
    assert loaded.hparams.initialised_from["weights"] == str(init)
    # a classifier checkpoint also serves as weights for the next stage
    next_stage = EmotionClassifier(["happy", "sad", "surprise"], weights=path)
    torch.testing.assert_close(next_stage.net.fc.weight, loaded.net.fc.weight)


def test_test_time_flip_averages_mirrored_predictions():
    model = EmotionClassifier(["a", "b"], test_time_flip=True).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model.predict_proba(x), model.predict_proba(x.flip(3)))

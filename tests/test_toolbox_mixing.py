"""Mixup and cutmix (models/mixing.py), the classifier's mixed-target training step, and its
settings that change nothing as given (mixing and distillation knobs left without effect)."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.models import EmotionClassifier
from emotion_lightning.models.classifier import inert_settings
from emotion_lightning.models.mixing import BatchMixer, soft_cross_entropy


def _batch(n: int = 16, classes: int = 3):
    torch.manual_seed(0)
    return torch.randn(n, 1, 12, 12), torch.arange(n) % classes


def _constant_images(n: int = 16):
    """Image i is filled with the value i + 1 and labelled i (n classes)."""
    return torch.arange(1.0, n + 1).view(n, 1, 1, 1).expand(n, 1, 12, 12).clone(), torch.arange(n)


@pytest.mark.parametrize("kind", ["mixup", "cutmix", "both"])
def test_mixed_targets_sum_to_one_and_weigh_what_the_image_holds(kind):
    alphas = {"mixup": (0.4, 0.0), "cutmix": (0.0, 1.0), "both": (0.4, 1.0)}[kind]
    torch.manual_seed(0)
    mixer = BatchMixer(16, *alphas)
    x, y = _constant_images()
    for _ in range(5):
        mixed, targets = mixer(x, y)
        assert mixed.shape == x.shape and targets.shape == (16, 16)
        torch.testing.assert_close(targets.sum(dim=1), torch.ones(16))
        assert (targets > 0).sum(dim=1).max() <= 2  # its own label and its partner's
        # mixup blends pixel values, cutmix pastes pixels: either way an image's mean value is
        # its targets' weighted mean of the image values (i + 1)
        torch.testing.assert_close(mixed.mean(dim=(1, 2, 3)), targets @ torch.arange(1.0, 17))
        assert not torch.equal(mixed, x)


def test_cutmix_pastes_pixels_and_mixup_blends_them():
    torch.manual_seed(0)
    x, y = _constant_images()
    cut, _ = BatchMixer(16, cutmix_alpha=1.0)(x, y)
    assert set(cut.unique().tolist()) <= set(range(1, 17))
    blend, _ = BatchMixer(16, mixup_alpha=0.4)(x, y)
    assert (blend.amax(dim=(1, 2, 3)) == blend.amin(dim=(1, 2, 3))).all()


def test_off_or_never_mixing_leaves_the_batch_alone():
    x, y = _batch()
    for mixer in (BatchMixer(3), BatchMixer(3, mixup_alpha=0.4, cutmix_alpha=1.0, p=0.0)):
        assert not mixer.enabled
        mixed, targets = mixer(x, y)
        assert mixed is x
        torch.testing.assert_close(targets, F.one_hot(y, 3).float())


def test_bad_mixing_settings_name_the_key():
    with pytest.raises(ValueError, match="mixup_alpha"):
        BatchMixer(3, mixup_alpha=-1)
    with pytest.raises(ValueError, match="mix_p"):
        BatchMixer(3, mixup_alpha=0.2, p=2)


def test_soft_cross_entropy_of_one_hot_targets_is_torchs_cross_entropy():
    torch.manual_seed(2)
    logits, y = torch.randn(10, 4), torch.randint(0, 4, (10,))
    weight = torch.tensor([0.5, 1.0, 2.0, 3.0])
    for w, ls in ((None, 0.0), (weight, 0.0), (weight, 0.1)):
        torch.testing.assert_close(soft_cross_entropy(logits, F.one_hot(y, 4).float(), w, ls),
                                   F.cross_entropy(logits, y, weight=w, label_smoothing=ls))


def test_class_weights_weigh_soft_targets_by_face_not_by_column():
    """A face counts by its target's expected class weight; its target is not tilted toward a
    heavy class (weighting the columns would pull every face's rare-class share up)."""
    torch.manual_seed(3)
    logits = torch.randn(3, 3)
    targets = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.0, 0.5, 0.5]])
    weight = torch.tensor([1.0, 2.0, 8.0])
    log_p = F.log_softmax(logits, dim=1)
    face_weight = targets @ weight
    expected = (face_weight * -(targets * log_p).sum(1)).sum() / face_weight.sum()
    torch.testing.assert_close(soft_cross_entropy(logits, targets, weight), expected)
    # the loss is smallest where the prediction is the target itself, whatever the weights
    best = torch.log(targets[:2])
    for tilted in (best + torch.tensor([0.0, 0.0, 0.3]), best + torch.tensor([0.3, 0.0, 0.0])):
        assert soft_cross_entropy(best, targets[:2], weight) < soft_cross_entropy(
            tilted, targets[:2], weight)


class _Recorder(BatchMixer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.targets: list[torch.Tensor] = []

    def __call__(self, x, y):
        x, targets = super().__call__(x, y)
        self.targets.append(targets)
        return x, targets


def test_training_with_mixing_learns_and_scores_the_dominant_label(tmp_path):
    L.seed_everything(0)
    dm = SyntheticDataModule(classes=["happy", "sad", "surprise"], num_train=32, num_val=16,
                             num_test=16, image_size=32, batch_size=16, num_workers=0)
    model = EmotionClassifier(dm.class_names, image_size=32, label_smoothing=0.1,
                              class_weights="balanced")
    model.mixer = _Recorder(3, mixup_alpha=0.4, cutmix_alpha=1.0)
    scored: list[torch.Tensor] = []
    update = model.metrics["train_"].update
    model.metrics["train_"].update = lambda logits, y: (scored.append(y), update(logits, y))
    before = [p.detach().clone() for p in model.parameters()]
    trainer = L.Trainer(max_epochs=2, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert len(scored) == len(model.mixer.targets) == 4
    assert any((t.amax(dim=1) < 1).any() for t in model.mixer.targets)  # batches were mixed
    for y, targets in zip(scored, model.mixer.targets):
        torch.testing.assert_close(y, targets.argmax(dim=1))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_mixing_off_trains_with_the_hard_label_loss():
    model = EmotionClassifier(["a", "b"], mixup_alpha=0.0, cutmix_alpha=0.0)
    assert not model.mixer.enabled
    assert not EmotionClassifier(["a", "b"], mixup_alpha=0.2, mix_p=0.0).mixer.enabled


def test_settings_that_change_nothing_are_named_and_logged(caplog):
    assert inert_settings({"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "mix_p": 0.5}) == [
        "model.mix_p=0.5 (mixup_alpha and cutmix_alpha are 0)"]
    assert inert_settings({"mixup_alpha": 0.2, "mix_p": 0.0}) == [
        "model.mixup_alpha=0.2 (mix_p is 0)"]
    assert inert_settings({"teacher": None, "distill_temperature": 2.0, "distill_weight": 0.5,
                           "distill_offline": True}) == [
        "model.distill_temperature=2.0 (no model.teacher)",
        "model.distill_offline=True (no model.teacher)"]
    assert inert_settings({"teacher": ["a.ckpt"], "distill_temperature": 2.0,
                           "mixup_alpha": 0.2, "mix_p": 0.5}) == []
    with caplog.at_level(logging.WARNING, logger="emotion_lightning.models.classifier"):
        EmotionClassifier(["a", "b"], distill_temperature=2.0)
        assert "model.distill_temperature=2.0 (no model.teacher) change nothing" in caplog.text
        caplog.clear()
        EmotionClassifier(["a", "b"], mixup_alpha=0.2, mix_p=0.5)
    assert caplog.text == ""

"""Ten-crop test-time augmentation (models/test_time.py) and its classifier/loader settings."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emotion_lightning.models import EmotionClassifier
from emotion_lightning.models.loading import load_classifier
from emotion_lightning.models.test_time import average_probabilities, five_crops, inference_views


def test_five_crops_are_the_corners_and_the_centre():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    crops = five_crops(x, 4)
    assert [c.shape for c in crops] == [(1, 1, 4, 4)] * 5
    assert [c[0, 0, 0, 0].item() for c in crops] == [0, 2, 12, 14, 7]  # top-left pixel of each
    with pytest.raises(ValueError, match="test_time_crop must be in 1..6"):
        five_crops(x, 7)


@pytest.mark.parametrize(("flip", "n"), [(False, 5), (True, 10)])
def test_crop_views_replace_the_image(flip, n):
    views = inference_views(torch.randn(2, 1, 48, 48), flip=flip, crop=40)
    assert len(views) == n and all(v.shape == (2, 1, 40, 40) for v in views)
    if flip:
        torch.testing.assert_close(views[5], views[0].flip(3))


def test_ten_crop_probabilities_are_the_mean_over_the_views():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x = torch.randn(4, 1, 12, 12)
    want = torch.stack([F.softmax(net(v), 1) for v in inference_views(x, True, crop=10)]).mean(0)
    torch.testing.assert_close(average_probabilities(net, x, flip=True, crop=10), want)
    with pytest.raises(ValueError, match="choose one"):
        average_probabilities(net, x, shift=2, crop=10)


def test_classifier_uses_the_crops_at_test_and_the_loader_overrides_them(tmp_path):
    model = EmotionClassifier(["a", "b"], image_size=48, test_time_flip=True,
                              test_time_crop=40).eval()
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        want = average_probabilities(model, x, flip=True, crop=40)
        torch.testing.assert_close(model.predict_proba(x), want)
        # validation during fit: the flip only
        torch.testing.assert_close(model.predict_proba(x, shifts=False),
                                   average_probabilities(model, x, flip=True))
    for bad in ({"test_time_crop": 49}, {"test_time_crop": 40, "test_time_shift": 2}):
        with pytest.raises(ValueError, match="test_time_crop"):
            EmotionClassifier(["a", "b"], image_size=48, **bad)
    path = tmp_path / "m.ckpt"
    shifted = EmotionClassifier(["a", "b"], image_size=48, test_time_shift=4)
    torch.save({"state_dict": shifted.state_dict(), "hyper_parameters": dict(shifted.hparams),
                "pytorch-lightning_version": "2.6.0"}, path)
    loaded = load_classifier(path, test_time_crop=40)
    assert loaded.hparams.test_time_crop == 40 and loaded.hparams.test_time_shift == 0
    assert load_classifier(path).hparams.test_time_crop == 0
    with pytest.raises(ValueError, match="image_size=48"):
        load_classifier(path, test_time_crop=64)

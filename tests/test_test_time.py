"""Test-time views: shifted and mirrored copies, averaged into one probability per class."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from emotion_lightning.models import EmotionClassifier
from emotion_lightning.models.loading import load_classifier
from emotion_lightning.models.test_time import (
    BLACK,
    average_probabilities,
    inference_views,
    shift_image,
)


def test_shift_moves_the_content_and_fills_the_border_black():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    moved = shift_image(x, dx=1, dy=2)  # right 1, down 2
    assert torch.equal(moved[0, 0, 2:, 1:], x[0, 0, :2, :3])
    assert torch.all(moved[0, 0, :2] == BLACK) and torch.all(moved[0, 0, :, 0] == BLACK)
    assert torch.equal(shift_image(x, 0, 0), x)
    assert BLACK < -1.5  # black is below the normalised mean, not 0


@pytest.mark.parametrize(("flip", "shift", "count"), [(False, 0, 1), (True, 0, 2),
                                                      (False, 3, 5), (True, 3, 10)])
def test_view_counts(flip, shift, count):
    views = inference_views(torch.randn(2, 1, 8, 8), flip, shift)
    assert len(views) == count and all(v.shape == (2, 1, 8, 8) for v in views)
    assert not any(torch.equal(a, b) for i, a in enumerate(views) for b in views[i + 1:])


def test_average_is_the_mean_of_each_view_softmax():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    x = torch.randn(4, 1, 8, 8)
    want = torch.stack([F.softmax(net(v), 1) for v in inference_views(x, True, 2)]).mean(0)
    got = average_probabilities(net, x, flip=True, shift=2)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got.sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="test_time_shift must be >= 0"):
        average_probabilities(net, x, shift=-1)


class _CountingNet(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.batch_sizes = net, []

    def forward(self, x):
        self.batch_sizes.append(x.shape[0])
        return self.net(x)


def test_validation_during_fit_uses_the_flip_only_and_test_every_view():
    model = EmotionClassifier(["a", "b"], test_time_flip=True, test_time_shift=2).eval()
    model.net = _CountingNet(model.net)
    x, y = torch.randn(3, 1, 48, 48), torch.tensor([0, 1, 0])
    model.log = model.log_dict = lambda *a, **k: None
    with torch.no_grad():
        for fn in ("fit", "validate"):  # each epoch's validation; emotion-eval split=val
            model._trainer = SimpleNamespace(state=SimpleNamespace(fn=fn))
            model.validation_step((x, y), 0)
        model.test_step((x, y), 1)
    assert model.net.batch_sizes == [3 * 2, 3 * 10, 3 * 10]


def test_shift_changes_predictions_and_loading_overrides_it(tmp_path):
    model = EmotionClassifier(["a", "b", "c"]).eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        plain = model.predict_proba(x)
        model.hparams.test_time_shift = 4
        shifted = model.predict_proba(x)
    assert not torch.allclose(plain, shifted)
    path = tmp_path / "m.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": "2.6.0"}, path)
    assert load_classifier(path).hparams.test_time_shift == 4
    loaded = load_classifier(path, test_time_flip=True, test_time_shift=0)
    assert loaded.hparams.test_time_shift == 0 and loaded.hparams.test_time_flip is True
    with pytest.raises(ValueError, match="test_time_shift must be >= 0"):
        load_classifier(path, test_time_shift=-2)
    with pytest.raises(ValueError, match="test_time_shift must be >= 0"):
        EmotionClassifier(["a", "b"], test_time_shift=-1)

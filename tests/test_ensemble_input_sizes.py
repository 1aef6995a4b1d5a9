"""Ensembles of members trained at different input sizes: each member sees its faces resampled
as its training data was made, and FER is read at its native 48 px."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from emotion_lightning.cli.common import native_size
from emotion_lightning.data.presets import normalize_batch
from emotion_lightning.evaluation import ClassSubset, data_image_size
from emotion_lightning.export import (
    export_metadata,
    export_onnx,
    export_torchscript,
    max_abs_difference,
)
from emotion_lightning.images import resize_square
from emotion_lightning.models import ClassifierEnsemble, EmotionClassifier
from emotion_lightning.models.distillation import soft_labels
from emotion_lightning.models.test_time import resized
from tests.conftest import CLASSES


def faces(n: int = 6, side: int = 48) -> np.ndarray:
    """Smooth gray faces-like images (a blurred random field, as photos are smooth)."""
    rng = np.random.default_rng(0)
    noise = torch.from_numpy(rng.random((n, 1, side // 4, side // 4), dtype=np.float32))
    up = F.interpolate(noise, size=(side, side), mode="bilinear", align_corners=False)
    return (up[:, 0].numpy() * 255).round().astype(np.uint8)


def test_growing_matches_the_pipelines_cubic_enlargement():
    gray = faces()
    grown = resized(normalize_batch(gray, 48), 96)
    pipeline = normalize_batch(gray, 96)  # cv2's cubic, from the 48-px images
    assert grown.shape == pipeline.shape == (6, 1, 96, 96)
    assert (grown - pipeline).abs().max() < 0.05  # rounding to uint8 in the pipeline


def test_shrinking_an_enlarged_face_comes_back_close_to_the_original():
    """An ensemble's 48-px member reading a 96-px copy: the area mean keeps it near the 48-px
    face it was trained on; antialiased bilinear blurred it (3.6 val points of a VGG)."""
    gray = faces()
    original = normalize_batch(gray, 48)
    enlarged = normalize_batch(gray, 96)
    shrunk = resized(enlarged, 48)
    blurred = F.interpolate(enlarged, size=(48, 48), mode="bilinear", align_corners=False,
                            antialias=True)
    error = (shrunk - original).abs().mean()
    assert error < 0.5 * (blurred - original).abs().mean()
    torch.testing.assert_close(shrunk, F.avg_pool2d(enlarged, 2))


def test_other_factors_and_same_sizes():
    x = torch.randn(2, 1, 100, 100)
    assert resized(x, 100) is x
    out = resized(x, 48)  # not a whole factor: antialiased bilinear
    torch.testing.assert_close(out, F.interpolate(x, size=(48, 48), mode="bilinear",
                                                  align_corners=False, antialias=True))
    assert resize_square(faces(1, 100)[0], 48).shape == (48, 48)


@pytest.fixture(scope="module")
def mixed():
    torch.manual_seed(0)
    small = EmotionClassifier(CLASSES, arch="resnet18", image_size=48).eval()
    large = EmotionClassifier(CLASSES, arch="resnet18", image_size=96).eval()
    return ClassifierEnsemble([small, large], ["small.ckpt", "large.ckpt"])


def test_an_ensemble_reads_fer_at_its_native_size(mixed):
    def native(target: str) -> int | None:
        return native_size(OmegaConf.create({"_target_": f"emotion_lightning.data.{target}"}))

    assert native("FERDataModule") == native("FERPlusDataModule") == 48
    assert native("SyntheticDataModule") is None and native_size(OmegaConf.create({})) is None
    assert mixed.hparams.image_size == 96
    assert data_image_size(mixed, 48) == 48
    assert data_image_size(ClassSubset(mixed, CLASSES[:3]), 48) == 48
    assert data_image_size(mixed, None) == 96  # no native size: the largest member's
    assert data_image_size(mixed, 128) == 96  # larger images are shrunk to the largest member's
    assert data_image_size(mixed.members[1], 48) == 96  # one network reads its own size


def test_an_ensemble_on_native_faces_gives_each_member_its_training_view(mixed):
    gray = faces()
    with torch.no_grad():
        got = mixed.predict_proba(normalize_batch(gray, 48))
        want = (mixed.members[0].predict_proba(normalize_batch(gray, 48))
                + mixed.members[1].predict_proba(normalize_batch(gray, 96))) / 2
    assert (got - want).abs().max() < 2e-3


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_mixed_size_ensemble_exports(mixed, tmp_path, fmt):
    export = {"torchscript": export_torchscript, "onnx": export_onnx}[fmt]
    path = export(mixed, tmp_path / f"mixed.{fmt}", export_metadata(mixed))
    assert max_abs_difference(mixed, {fmt: path})[fmt] < 1e-4


def test_teachers_of_two_sizes_label_faces_made_at_their_own_sizes(mixed):
    gray = faces()
    small, large = mixed.members
    got = soft_labels([small, large], gray, 2.0, torch.device("cpu"), progress=False)
    with torch.no_grad():
        want = (F.softmax(small(normalize_batch(gray, 48)) / 2.0, dim=1)
                + F.softmax(large(normalize_batch(gray, 96)) / 2.0, dim=1)) / 2
    np.testing.assert_allclose(got, want.numpy(), atol=1e-5)

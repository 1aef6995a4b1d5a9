"""BatchAugment (the device loader's augmentation) against GrayPreset (the DataLoader's), on a
fixed seed: flip rate, crop offsets, affine geometry, brightness/contrast, erasing, values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotion_lightning.data.batch_augment import BatchAugment, normalize_gray
from emotion_lightning.data.presets import MEAN_255, STD_255, GrayPreset
from tests.conftest import one_torch_thread

SIZE = 48
SAMPLES = 1500


def both_paths(image: np.ndarray, samples: int = SAMPLES, seed: int = 0,
               **augmentation) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` augmentations of ``image`` by each path, seeded, as gray levels ``[samples, S, S]``."""
    preset = GrayPreset(SIZE, train=True, **augmentation)
    preset.pipeline.set_random_seed(seed)
    with one_torch_thread():
        host = torch.stack([preset(image) for _ in range(samples)])[:, 0]
        batch = torch.from_numpy(np.repeat(image[None], samples, axis=0))
        device = BatchAugment(SIZE, **augmentation)(batch, torch.Generator().manual_seed(seed))[:, 0]
    return (host * STD_255 + MEAN_255).numpy(), (device * STD_255 + MEAN_255).numpy()


def column_ramp() -> np.ndarray:
    """Column ``c`` holds gray level ``10 + 5 c``: a pixel's value names its source column."""
    return np.repeat((10 + 5 * np.arange(SIZE, dtype=np.uint8))[None], SIZE, axis=0)


def offsets_and_flips(levels: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal crop offset (0..2 pad) and flip of each crop of :func:`column_ramp`."""
    middle = levels[:, SIZE // 2, SIZE // 2 - 1 : SIZE // 2 + 1].round()
    flipped = middle[:, 1] < middle[:, 0]
    source = (middle[:, 0] - 10) / 5  # the source column at output column SIZE/2 - 1
    column = np.where(flipped, SIZE - 1 - (SIZE // 2 - 1), SIZE // 2 - 1)
    return (source - column + pad).astype(int), flipped


def test_flip_rate_and_crop_offsets_match_the_preset():
    pad = 4
    host, device = both_paths(column_ramp(), pad_crop=pad, affine_p=0.0)
    for levels in (host, device):
        offsets, flipped = offsets_and_flips(levels, pad)
        assert flipped.mean() == pytest.approx(0.5, abs=0.05)
        counts = np.bincount(offsets, minlength=2 * pad + 1) / len(offsets)
        assert len(counts) == 2 * pad + 1  # never outside 0..2 pad
        np.testing.assert_allclose(counts, 1 / (2 * pad + 1), atol=0.035)
    # both zero-fill the padding: the border columns of a shifted crop are black
    assert (host == 0).any() and (device == 0).any()


def foreground_stats(levels: np.ndarray) -> dict[str, tuple[float, float]]:
    """Mean and spread of the kept area and of the centroid of a white square's warps."""
    mask = levels > 127
    area = mask.mean(axis=(1, 2))
    cols = np.arange(SIZE)[None, None, :]
    rows = np.arange(SIZE)[None, :, None]
    weight = mask.sum(axis=(1, 2)).clip(min=1)
    cx = (mask * cols).sum(axis=(1, 2)) / weight
    cy = (mask * rows).sum(axis=(1, 2)) / weight
    return {k: (float(v.mean()), float(v.std())) for k, v in (("area", area), ("cx", cx), ("cy", cy))}


def test_affine_geometry_matches_the_preset():
    square = np.zeros((SIZE, SIZE), np.uint8)
    square[12:36, 12:36] = 255  # translations of up to a quarter keep it mostly inside
    host, device = both_paths(square, hflip=0.0)
    h, d = foreground_stats(host), foreground_stats(device)
    # area ~ sx * sy * 0.25 (x and y scales drawn independently from 0.5-1)
    assert d["area"][0] == pytest.approx(h["area"][0], rel=0.04)
    assert d["area"][1] == pytest.approx(h["area"][1], rel=0.1)
    for axis in ("cx", "cy"):  # the centre moves by whole pixels up to +-12, uniformly
        assert d[axis][0] == pytest.approx(h[axis][0], abs=1.0)
        assert d[axis][1] == pytest.approx(h[axis][1], rel=0.08)
    # one fixed warp (scale 0.6 about the centre): the same pixels, up to rounding
    rng = np.random.default_rng(2)
    texture = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    fixed_host, fixed_device = both_paths(texture, samples=1, hflip=0.0, rotate=0.0,
                                          translate=0.0, scale=(0.6, 0.6))
    difference = np.abs(fixed_host - fixed_device)
    assert difference.max() <= 1
    # affine_p: the share left untouched
    half_host, half_device = both_paths(square, hflip=0.0, affine_p=0.3, samples=800)
    untouched = [float((levels == square).all(axis=(1, 2)).mean()) for levels in (half_host, half_device)]
    assert untouched[0] == pytest.approx(0.7, abs=0.06) and untouched[1] == pytest.approx(0.7, abs=0.06)


def test_brightness_contrast_matches_the_preset():
    gray = np.full((SIZE, SIZE), 128, np.uint8)
    host, device = both_paths(gray, hflip=0.0, affine_p=0.0, brightness_contrast=0.3)
    for levels in (host, device):
        first = levels[:, 0, 0]
        assert (levels == first[:, None, None]).all()  # one gain and offset per image
        assert (first != 128).mean() == pytest.approx(0.5, abs=0.05)
        assert first.min() >= 0 and first.max() <= 255
    changed_host, changed_device = host[:, 0, 0][host[:, 0, 0] != 128], device[:, 0, 0][device[:, 0, 0] != 128]
    # 128 * U(0.7, 1.3) + U(-76.5, 76.5): mean 128, spread sqrt(128^2 0.03 + 76.5^2 / 3) ~ 49,
    # so the two means of ~750 draws each differ by ~2.5 at one standard error: allow four
    standard_error = np.hypot(*(c.std() / np.sqrt(len(c)) for c in (changed_host, changed_device)))
    assert changed_device.mean() == pytest.approx(changed_host.mean(), abs=4 * standard_error)
    assert changed_device.std() == pytest.approx(changed_host.std(), rel=0.1)


def test_erasing_matches_the_preset():
    gray = np.full((SIZE, SIZE), 200, np.uint8)
    host, device = both_paths(gray, hflip=0.0, affine_p=0.0, erasing_p=0.8)
    shares = []
    for levels in (host, device):
        erased = np.abs(levels - 200) > 1
        area = erased.mean(axis=(1, 2))
        assert (area > 0).mean() == pytest.approx(0.8, abs=0.05)
        shares.append(area[area > 0])
        # the rectangle is the mean gray, ~0 after normalisation
        assert np.abs(levels[erased] - MEAN_255).max() < 1
    assert shares[1].mean() == pytest.approx(shares[0].mean(), rel=0.06)
    assert shares[1].std() == pytest.approx(shares[0].std(), rel=0.1)
    assert shares[0].max() <= 0.34 and shares[1].max() <= 0.34


def test_value_ranges_and_gray_levels_match_the_preset():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    host, device = both_paths(image, samples=300, pad_crop=4, brightness_contrast=0.2,
                              erasing_p=0.5)
    for levels in (host, device):
        assert levels.min() >= -1e-3 and levels.max() <= 255 + 1e-3
        whole = np.isclose(levels, levels.round(), atol=2e-3) | np.isclose(levels, MEAN_255, atol=1e-3)
        assert whole.all()  # whole gray levels (or the erasing's mean gray), as uint8 steps give
    assert device.mean() == pytest.approx(host.mean(), rel=0.05)
    assert device.std() == pytest.approx(host.std(), rel=0.05)


def test_same_generator_seed_same_batch_and_normalisation_as_the_preset():
    rng = np.random.default_rng(1)
    batch = torch.from_numpy(rng.integers(0, 256, (6, SIZE, SIZE), dtype=np.uint8))
    augment = BatchAugment(SIZE, pad_crop=4, erasing_p=0.5, brightness_contrast=0.2)
    a = augment(batch, torch.Generator().manual_seed(3))
    b = augment(batch, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, augment(batch, torch.Generator().manual_seed(4)))
    evaluation = GrayPreset(SIZE)
    expected = torch.stack([evaluation(image) for image in batch.numpy()])
    assert torch.equal(normalize_gray(batch), expected)


def test_bad_augmentation_settings_fail_like_the_preset():
    with pytest.raises(ValueError, match=r"data.augmentation.hflip is a probability in \[0, 1\], got 1.5"):
        BatchAugment(SIZE, hflip=1.5)
    with pytest.raises(TypeError, match="rotat"):
        BatchAugment(SIZE, rotat=5.0)
    with pytest.raises(ValueError, match=r"BatchAugment\(48\) takes \[N, 48, 48\] images, got \(2, 40, 40\)"):
        BatchAugment(SIZE)(torch.zeros(2, 40, 40, dtype=torch.uint8), torch.Generator())

"""Test-time augmentation: class probabilities averaged over mirrored, shifted or cropped views."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from emotion_lightning.constants import GRAY_MEAN, GRAY_STD

# a black pixel after normalisation: what the training pad-and-crop fills the border with
BLACK = -GRAY_MEAN / GRAY_STD


def shift_image(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``x`` (``[N, C, H, W]``) moved ``dx`` pixels right and ``dy`` down, the border black."""
    s = max(abs(dx), abs(dy))
    if s == 0:
        return x
    padded = F.pad(x, (s, s, s, s), value=BLACK)
    h, w = x.shape[-2:]
    return padded[..., s - dy:s - dy + h, s - dx:s - dx + w]


def five_crops(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The four corner and the centre ``size`` x ``size`` crops of ``x`` (``[N, C, H, W]``)."""
    h, w = x.shape[-2:]
    if not 0 < size <= min(h, w):
        raise ValueError(f"test_time_crop must be in 1..{min(h, w)} pixels (the input side), "
                         f"got {size}")
    top, left = (h - size) // 2, (w - size) // 2
    return [x[..., :size, :size], x[..., :size, w - size:], x[..., h - size:, :size],
            x[..., h - size:, w - size:], x[..., top:top + size, left:left + size]]


def inference_views(x: torch.Tensor, flip: bool = False, shift: int = 0,
                    crop: int = 0) -> list[torch.Tensor]:
    """The image, its four diagonal ``shift``-pixel shifts (``shift > 0``), and their mirrors
    (``flip``): 1, 2, 5 or 10 views of the batch. ``crop > 0`` replaces the image and shifts
    by its five ``crop``-pixel crops (:func:`five_crops`): with ``flip``, the ten-crop views
    (Krizhevsky et al.), each ``crop`` pixels wide (the network pools globally)."""
    if shift < 0:
        raise ValueError(f"test_time_shift must be >= 0 pixels, got {shift}")
    if crop and shift:
        raise ValueError(f"test_time_crop={crop} and test_time_shift={shift}: choose one "
                         "(set the other to 0)")
    views = [x]
    if crop:
        views = five_crops(x, crop)
    if shift:
        views += [shift_image(x, dx, dy)
                  for dx, dy in ((shift, shift), (-shift, -shift), (shift, -shift), (-shift, shift))]
    if flip:
        views += [torch.flip(v, dims=[3]) for v in views]
    return views


def average_probabilities(
    logits_fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    flip: bool = False,
    shift: int = 0,
    crop: int = 0,
) -> torch.Tensor:
    """Softmax of ``logits_fn`` averaged over :func:`inference_views` (one batched forward)."""
    views = inference_views(x, flip, shift, crop)
    logits = logits_fn(torch.cat(views) if len(views) > 1 else x)
    probs = F.softmax(logits.float(), dim=1)
    return probs.reshape(len(views), -1, probs.shape[1]).mean(dim=0)


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` (``[N, C, H, W]``) at ``size`` x ``size``, or ``x`` itself when it has that size:
    a batch for a model trained at another input size. Resampled as the data pipeline makes
    that size from a source image (:func:`~emotion_lightning.images.resize_square`): bicubic
    when growing, the area mean when shrinking by a whole factor (antialiased bilinear for
    other factors), so a member trained at 48 px sees nearly what training showed it."""
    if x.shape[-2:] == (size, size):
        return x
    if size > x.shape[-1]:
        return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    if x.shape[-1] % size == 0 and x.shape[-2] % size == 0:
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=True)

"""Test-time augmentation: class probabilities averaged over mirrored and shifted views."""

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


def inference_views(x: torch.Tensor, flip: bool = False, shift: int = 0) -> list[torch.Tensor]:
    """The image, its four diagonal ``shift``-pixel shifts (``shift > 0``), and their mirrors
    (``flip``): 1, 2, 5 or 10 views of the batch."""
    if shift < 0:
        raise ValueError(f"test_time_shift must be >= 0 pixels, got {shift}")
    views = [x]
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
) -> torch.Tensor:
    """Softmax of ``logits_fn`` averaged over :func:`inference_views` (one batched forward)."""
    views = inference_views(x, flip, shift)
    logits = logits_fn(torch.cat(views) if len(views) > 1 else x)
    probs = F.softmax(logits.float(), dim=1)
    return probs.reshape(len(views), -1, probs.shape[1]).mean(dim=0)

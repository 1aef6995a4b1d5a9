"""The training augmentation of :class:`~emotion_lightning.data.presets.GrayPreset` on whole
batches of tensors, on whatever device they are (the device-resident loader's GPU, or the CPU).

Same steps, order, parameters and distributions as the preset (albumentations), each drawn per
image from one ``torch.Generator``, with no host synchronisation: the padded random crop and
the flip are one gather, the affine one ``affine_grid``/``grid_sample``, then brightness and
contrast, random erasing and the normalisation. Values are rounded to whole gray levels where
the preset's uint8 steps round them, so both paths feed the network the same set of values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from emotion_lightning.data.presets import MEAN_255, check_probabilities, normalize_levels


def normalize_gray(images: torch.Tensor) -> torch.Tensor:
    """Gray levels (uint8 or float, 0-255) ``[N, H, W]`` -> normalised float32 ``[N, 1, H, W]``
    (:func:`~emotion_lightning.data.presets.normalize_levels`, as :class:`GrayPreset`)."""
    return normalize_levels(images.to(torch.float32)).unsqueeze(1)


def _uniform(low: float, high: float, n: int, generator: torch.Generator,
             device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


class BatchAugment:
    """uint8 ``[N, S, S]`` images (already ``image_size``) -> augmented, normalised float32
    ``[N, 1, S, S]``; the keywords are :class:`GrayPreset`'s (``data.augmentation``).

    In order, each image with its own draws: a random ``S`` crop of the image zero-padded by
    ``pad_crop`` (offsets uniform in 0..2*pad_crop), horizontal flip with probability
    ``hflip``, with probability ``affine_p`` the affine of albumentations' ``Affine`` (rotate
    uniform ±``rotate`` degrees about the centre, x and y scale each uniform in ``scale``,
    translation of a whole number of pixels, ±``translate`` of the side, bilinear, black
    border), with probability 0.5 contrast ``x * (1 + U(±c))`` plus brightness ``U(±c) * 255``
    (``c = brightness_contrast``, clipped to 0-255), and with probability ``erasing_p`` one
    rectangle of ``erasing_scale`` of the area and aspect ratio (width / height) in
    ``erasing_ratio`` set to the mean gray (0 after normalisation).
    """

    def __init__(
        self,
        image_size: int,
        hflip: float = 0.5,
        rotate: float = 10.0,
        translate: float = 0.25,
        scale: tuple[float, float] = (0.5, 1.0),
        affine_p: float = 1.0,
        brightness_contrast: float = 0.0,
        pad_crop: int = 0,
        erasing_p: float = 0.0,
        erasing_scale: tuple[float, float] = (0.02, 0.33),
        erasing_ratio: tuple[float, float] = (0.3, 3.3),
    ) -> None:
        check_probabilities(hflip=hflip, affine_p=affine_p, erasing_p=erasing_p)
        self.image_size = int(image_size)
        self.hflip = float(hflip)
        self.rotate = float(rotate)
        self.translate = float(translate)
        self.scale = (float(scale[0]), float(scale[1]))
        self.affine_p = float(affine_p)
        self.brightness_contrast = float(brightness_contrast)
        self.pad_crop = int(pad_crop)
        self.erasing_p = float(erasing_p)
        self.erasing_scale = (float(erasing_scale[0]), float(erasing_scale[1]))
        self.erasing_ratio = (float(erasing_ratio[0]), float(erasing_ratio[1]))

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if images.ndim != 3 or images.shape[1:] != (self.image_size, self.image_size):
            raise ValueError(f"BatchAugment({self.image_size}) takes [N, {self.image_size}, "
                             f"{self.image_size}] images, got {tuple(images.shape)}")
        x = self._crop_and_flip(images, generator).to(torch.float32)
        if self.affine_p > 0:
            x = self._affine(x, generator)
        if self.brightness_contrast > 0:
            x = self._brightness_contrast(x, generator)
        if self.erasing_p > 0:
            x = self._erase(x, generator)
        return normalize_gray(x)

    def _crop_and_flip(self, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """The padded random crop and the flip: one gather of whole pixels."""
        n, s, pad, device = len(images), self.image_size, self.pad_crop, images.device
        steps = torch.arange(s, device=device)
        rows = steps.expand(n, s)
        cols = steps.expand(n, s)
        if pad > 0:
            images = F.pad(images, (pad, pad, pad, pad))
            rows = rows + torch.randint(0, 2 * pad + 1, (n, 1), generator=g, device=device)
            cols = cols + torch.randint(0, 2 * pad + 1, (n, 1), generator=g, device=device)
        if self.hflip > 0:
            flip = torch.rand(n, 1, generator=g, device=device) < self.hflip
            cols = torch.where(flip, cols.flip(1), cols)
        # one gather of flat indices (several times faster than three advanced indices on CPUs)
        flat = rows[:, :, None] * images.shape[-1] + cols[:, None, :]
        return images.reshape(n, -1).gather(1, flat.reshape(n, -1)).reshape(n, s, s)

    def _affine(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """albumentations' ``Affine`` (forward matrix ``centre + t + R(angle) diag(sx, sy)
        (p - centre)``), sampled through its inverse as cv2's ``warpAffine`` does."""
        n, s, device = len(x), self.image_size, x.device
        apply = torch.rand(n, generator=g, device=device) < self.affine_p
        angle = _uniform(-self.rotate, self.rotate, n, g, device) * (math.pi / 180.0)
        sx = _uniform(*self.scale, n, g, device)
        sy = _uniform(*self.scale, n, g, device)
        # int(U(±translate) * side): whole pixels, truncated towards zero
        tx = torch.trunc(_uniform(-self.translate, self.translate, n, g, device) * s)
        ty = torch.trunc(_uniform(-self.translate, self.translate, n, g, device) * s)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # inverse of R @ diag(sx, sy), R = [[cos, sin], [-sin, cos]]: diag(1/sx, 1/sy) @ R^T
        inv = torch.stack([torch.stack([cos / sx, -sin / sx], 1),
                           torch.stack([sin / sy, cos / sy], 1)], 1)
        # centred pixel coordinates are normalised ones (align_corners=False) times s / 2
        shift = torch.stack([tx, ty], 1) * (2.0 / s)
        theta = torch.cat([inv, -(inv @ shift[:, :, None])], 2)
        grid = F.affine_grid(theta, [n, 1, s, s], align_corners=False)
        warped = F.grid_sample(x[:, None], grid, mode="bilinear", padding_mode="zeros",
                               align_corners=False)[:, 0]
        return torch.where(apply[:, None, None], warped.round(), x)

    def _brightness_contrast(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """albumentations' ``RandomBrightnessContrast`` on uint8 (``p=0.5``): its lookup table
        ``clip(x * alpha + beta)`` truncated to whole levels."""
        n, limit, device = len(x), self.brightness_contrast, x.device
        apply = torch.rand(n, generator=g, device=device) < 0.5
        alpha = 1.0 + _uniform(-limit, limit, n, g, device)
        beta = _uniform(-limit, limit, n, g, device) * 255.0
        adjusted = (x * alpha[:, None, None] + beta[:, None, None]).clamp(0.0, 255.0).floor()
        return torch.where(apply[:, None, None], adjusted, x)

    def _erase(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """albumentations' ``Erasing``: area uniform in ``erasing_scale`` of the image (as far
        as a rectangle of an allowed ratio fits), then the ratio uniform among those that fit,
        ``h = round(sqrt(area / ratio))``, ``w = round(sqrt(area * ratio))``, uniform position."""
        n, s, device = len(x), self.image_size, x.device
        total = float(s * s)
        (low, high), (r_low, r_high) = self.erasing_scale, self.erasing_ratio
        max_area = min(total * high, r_low * total, total / r_high)
        if max_area < total * low:  # no rectangle of these ratios fits: the preset erases nothing
            return x
        apply = torch.rand(n, generator=g, device=device) < self.erasing_p
        area = _uniform(total * low, max_area, n, g, device)
        ratio_low = torch.clamp(area / total, min=r_low)
        ratio_high = torch.clamp(total / area, max=r_high)
        ratio = ratio_low + (ratio_high - ratio_low) * torch.rand(n, generator=g, device=device)
        apply &= ratio_low <= ratio_high
        h = torch.sqrt(area / ratio).round().clamp(max=s)
        w = torch.sqrt(area * ratio).round().clamp(max=s)
        top = torch.floor(torch.rand(n, generator=g, device=device) * (s - h + 1))
        left = torch.floor(torch.rand(n, generator=g, device=device) * (s - w + 1))
        steps = torch.arange(s, device=device, dtype=torch.float32)
        inside_rows = (steps >= top[:, None]) & (steps < (top + h)[:, None])
        inside_cols = (steps >= left[:, None]) & (steps < (left + w)[:, None])
        hole = inside_rows[:, :, None] & inside_cols[:, None, :] & apply[:, None, None]
        return torch.where(hole, torch.full_like(x, MEAN_255), x)

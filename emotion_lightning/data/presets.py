"""Every training and evaluation transform of gray face images (torchvision-references style).

The conversions they build on (to gray, resize) are in :mod:`emotion_lightning.images`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import cv2
import numpy as np

from emotion_lightning.constants import GRAY_MEAN, GRAY_STD
from emotion_lightning.images import resize_square
from emotion_lightning.inert import set_in_vain, signature_defaults

#: The normalisation on the 0-255 scale, rounded to float32 as every transform computes it.
MEAN_255 = float(np.float32(GRAY_MEAN * 255.0))
STD_255 = float(np.float32(GRAY_STD * 255.0))


def normalize_levels(levels):
    """Gray levels (0-255, a float32 array or tensor) -> the model's input: the one
    normalisation of training, evaluation, inference and the device loader."""
    return (levels - MEAN_255) / STD_255


def _albumentations():
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no version check over the network
    import albumentations as A  # imported lazily: a heavy import only training needs

    return A


def check_probabilities(**probabilities: float) -> None:
    """Fail naming the ``data.augmentation`` key whose probability is outside [0, 1]."""
    for name, p in probabilities.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"data.augmentation.{name} is a probability in [0, 1], got {p}")


#: The probability that applies each group of ``data.augmentation`` strengths.
GATED_STRENGTHS = {"affine_p": ("rotate", "translate", "scale"),
                   "erasing_p": ("erasing_scale", "erasing_ratio")}


def inert_strengths(augmentation: Mapping) -> list[str]:
    """The ``data.augmentation`` strengths set away from :class:`GrayPreset`'s defaults while
    the probability that applies them is 0, as ``"key=value (gate=0)"``: they change no image,
    so runs or sweeps that differ only in them differ only by chance."""
    defaults = signature_defaults(GrayPreset)
    closed = [(key, f"{gate}=0") for gate, strengths in GATED_STRENGTHS.items()
              if augmentation.get(gate, defaults[gate]) == 0 for key in strengths]
    return set_in_vain(defaults, augmentation, closed)


class GrayPreset:
    """uint8 HxW gray image -> normalised float32 tensor ``[1, size, size]``.

    Evaluation is :func:`resize_square` then normalisation, exactly as :func:`normalize_batch`.

    ``train=True`` applies the training augmentation, in this order: a random ``image_size``
    crop of the image zero-padded by ``pad_crop`` pixels (0: none), horizontal flip, with
    probability ``affine_p`` the recipe's random affine (rotate ±``rotate`` degrees, translate
    ±``translate`` of the size, scale ``scale``), with probability 0.5 brightness and contrast
    jitter of ±``brightness_contrast`` (0: none), and with probability ``erasing_p`` random
    erasing (Zhong et al.) of one rectangle of ``erasing_scale`` of the area and aspect ratio
    ``erasing_ratio``, filled with the mean gray (0 after normalisation, like torchvision's
    ``RandomErasing``).
    """

    def __init__(
        self,
        image_size: int = 48,
        train: bool = False,
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
        A = _albumentations()
        steps: list = []
        if train and pad_crop > 0:
            padded = image_size + 2 * pad_crop
            steps += [A.PadIfNeeded(padded, padded, border_mode=cv2.BORDER_CONSTANT, fill=0),
                      A.RandomCrop(image_size, image_size)]
        if train:
            steps.append(A.HorizontalFlip(p=hflip))
        if train and affine_p > 0:
            steps.append(
                A.Affine(
                    rotate=(-rotate, rotate),
                    translate_percent=(-translate, translate),
                    scale=tuple(scale),
                    border_mode=cv2.BORDER_CONSTANT,
                    fill=0,
                    p=affine_p,
                )
            )
        if train and brightness_contrast > 0:
            steps.append(
                A.RandomBrightnessContrast(
                    brightness_limit=brightness_contrast,
                    contrast_limit=brightness_contrast,
                    p=0.5,
                )
            )
        if train and erasing_p > 0:
            steps.append(A.Erasing(scale=tuple(erasing_scale), ratio=tuple(erasing_ratio),
                                   fill=MEAN_255, p=erasing_p))
        self.image_size = image_size
        self.train = train
        self.pipeline = A.Compose(steps)

    def __call__(self, gray: np.ndarray):
        import torch

        out = resize_square(gray, self.image_size)
        if self.train:
            out = self.pipeline(image=out)["image"]
        return torch.from_numpy(normalize_levels(out.astype(np.float32))).unsqueeze(0)

    def __repr__(self) -> str:
        return f"GrayPreset(image_size={self.image_size}, train={self.train})"


def normalize_batch(gray_uint8, image_size: int):
    """Batch version of the eval preset for inference: uint8 ``[N, H, W]`` -> float tensor."""
    import torch

    batch = np.stack([resize_square(g, image_size) for g in gray_uint8]).astype(np.float32)
    return torch.from_numpy(normalize_levels(batch)).unsqueeze(1)

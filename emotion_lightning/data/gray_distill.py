"""Gray distillation, the data: unlabelled RGB images as (colour, gray) view pairs.

Any folder tree of colour images works (ImageNet's val set, or a small scrape of a few images
per ImageNet class, see :mod:`emotion_lightning.data.imagenet_classes`). Each sample is one
crop/flip applied once and returned twice: the colour view normalised with ImageNet statistics
(the RGB teacher's input) and its ITU-R 601 luma normalised with ``GRAY_MEAN``/``GRAY_STD``
(the gray student's input).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision.transforms import v2

from emotion_lightning.constants import GRAY_MEAN, GRAY_STD, IMAGENET_MEAN, IMAGENET_STD
from emotion_lightning.data.base import SplitLoaders
from emotion_lightning.images import STILL_IMAGE_SUFFIXES, to_gray

log = logging.getLogger(__name__)

#: PIL modes that carry no colour: such sources teach the student nothing and are skipped.
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def find_rgb_images(root: str | Path) -> tuple[list[Path], int, int]:
    """Colour images under ``root`` (recursive, sorted), and the counts of gray and unreadable
    files skipped. Only image headers are read."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"distillation images root {folder} is not a folder: expected a folder tree of RGB "
            f"images ({', '.join(sorted(STILL_IMAGE_SUFFIXES))}), e.g. ImageNet's val set or a scrape of a "
            "few images per ImageNet class; set data.root=/path/to/images"
        )
    candidates = sorted(p for p in folder.rglob("*") if p.suffix.lower() in STILL_IMAGE_SUFFIXES)
    paths, gray, unreadable = [], 0, 0
    for path in candidates:
        try:
            with Image.open(path) as image:
                mode = image.mode
        except (UnidentifiedImageError, OSError):
            unreadable += 1
            continue
        if mode in GRAY_MODES:
            gray += 1
        else:
            paths.append(path)
    if not paths:
        raise FileNotFoundError(
            f"no colour images under {folder} ({len(candidates)} files with suffixes "
            f"{', '.join(sorted(STILL_IMAGE_SUFFIXES))}, {gray} gray, {unreadable} unreadable): expected a "
            "folder tree of RGB images, e.g. ImageNet's val set"
        )
    return paths, gray, unreadable


class PairedViews:
    """PIL image -> ``{"rgb": [3, S, S], "gray": [1, S, S]}``: one crop/flip, two normalisations.

    ``train=True``: random resized crop and horizontal flip. Otherwise resize the short side to
    ``size * 256 / 224`` and centre-crop (the ImageNet evaluation geometry).
    """

    def __init__(self, image_size: int = 224, train: bool = False) -> None:
        if train:
            steps = [v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip()]
        else:
            steps = [v2.Resize(round(image_size * 256 / 224), antialias=True),
                     v2.CenterCrop(image_size)]
        self.geometry = v2.Compose(steps)
        self.image_size = image_size
        self.train = train
        self.rgb_mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.rgb_std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __call__(self, image: Image.Image) -> dict[str, torch.Tensor]:
        rgb = np.asarray(self.geometry(image.convert("RGB")))
        colour = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0
        luma = torch.from_numpy(to_gray(rgb)).unsqueeze(0).float() / 255.0
        return {
            "rgb": (colour - self.rgb_mean) / self.rgb_std,
            "gray": (luma - GRAY_MEAN) / GRAY_STD,
        }

    def __repr__(self) -> str:
        return f"PairedViews(image_size={self.image_size}, train={self.train})"


class PairedImageDataset(Dataset):
    """Image files decoded on access and turned into (colour, gray) view pairs."""

    def __init__(self, paths: Sequence[Path], views: PairedViews) -> None:
        self.paths = list(paths)
        self.views = views

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        with Image.open(self.paths[index]) as image:
            return self.views(image)


class GrayDistillDataModule(SplitLoaders, L.LightningDataModule):
    """Colour images under ``root`` split (seeded) into train and val view pairs.

    The stage is unsupervised, so there is no separate test set: ``test`` reports on val.

    Args:
        root: folder tree of RGB images (searched recursively; gray sources are skipped).
        image_size: side of the square crops.
        batch_size: per-process batch size.
        num_workers: DataLoader workers per process; ``None`` picks them for the cores.
        val_fraction: share of the images held out for validation (at least one image).
        seed: seed of the train/val split.
        pin_memory: ``None`` pins when CUDA is available.
    """

    def __init__(
        self,
        root: str | Path,
        image_size: int = 224,
        batch_size: int = 64,
        num_workers: int | None = None,
        val_fraction: float = 0.05,
        seed: int = 42,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.root = Path(root).expanduser()
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.pin_memory = pin_memory
        self.datasets: dict[str, PairedImageDataset] = {}

    def split_paths(self) -> dict[str, list[Path]]:
        """``{"train": [...], "val": [...]}``: a seeded permutation of the colour images."""
        paths, gray, unreadable = find_rgb_images(self.root)
        if gray or unreadable:
            log.info("skipped %d gray and %d unreadable images under %s", gray, unreadable,
                     self.root)
        if len(paths) < 2:
            raise ValueError(f"need at least 2 colour images under {self.root}, found {len(paths)}")
        order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(self.seed))
        num_val = min(len(paths) - 1, max(1, round(len(paths) * self.val_fraction)))
        return {
            "train": [paths[i] for i in order[num_val:].tolist()],
            "val": [paths[i] for i in order[:num_val].tolist()],
        }

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        for split, paths in self.split_paths().items():
            views = PairedViews(self.image_size, train=split == "train")
            self.datasets[split] = PairedImageDataset(paths, views)
        log.info("%s: train=%d val=%d images from %s", type(self).__name__,
                 len(self.datasets["train"]), len(self.datasets["val"]), self.root)

    test_split = "val"  # the stage is unsupervised: test reports on the val images

"""Several datasets trained as one, each validated and tested under its own name."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from emotion_lightning.constants import DEFAULT_CLASSES
from emotion_lightning.data.base import (
    ArrayDataset,
    GrayImageDataModule,
    LoaderOptions,
    build_loader,
    faces_of,
)
from emotion_lightning.data.device_loader import resized_stack
from emotion_lightning.data.presets import GrayPreset

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11


class MultiDataModule(GrayImageDataModule):
    """Datasets of the same classes (e.g. FER2013 + RAF-DB) trained together.

    The train splits are concatenated (every image resized to ``image_size``) and drawn
    with replacement so that dataset ``d`` fills ``weights[d] / sum(weights)`` of each epoch
    (default: in proportion to its size, as plain concatenation); an epoch has as many
    samples as the train splits together. Validation and test give one dataloader per
    dataset, in ``datasets`` order (``dataset_names``), so the classifier logs
    ``val/<name>/acc``... beside ``val/acc`` over all of them, and a sweep can optimise either.

    Args:
        datasets: name -> a datamodule of the same ``classes``; their own loader settings
            are not used (this module's ``image_size``, ``batch_size``, augmentation... are).
        weights: name -> sampling weight (> 0) of that dataset's training images.
        seed: seeds the training draws.
    """

    def __init__(
        self,
        datasets: Mapping[str, GrayImageDataModule],
        weights: Mapping[str, float] | None = None,
        classes: Sequence[str] = DEFAULT_CLASSES,
        seed: int = 42,
        **loader: Unpack[LoaderOptions],
    ) -> None:
        super().__init__(classes, **loader)
        if not datasets:
            raise ValueError("data.datasets is empty: name at least one datamodule")
        for name, member in datasets.items():
            if not isinstance(member, GrayImageDataModule):
                raise TypeError(f"data.datasets.{name} is a {type(member).__name__}, not a "
                                "GrayImageDataModule")
            if member.class_names != self.class_names:
                raise ValueError(f"data.datasets.{name} has classes {member.class_names}, this "
                                 f"module {self.class_names}: give every dataset the same classes")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(datasets))
        if unknown or any(not w > 0 for w in weights.values()):
            raise ValueError(f"data.weights {weights}: give a weight > 0 for names among "
                             f"{list(datasets)}")
        if weights and set(weights) != set(datasets):
            missing = sorted(set(datasets) - set(weights))
            raise ValueError(f"data.weights names {sorted(weights)} but not {missing}: weigh "
                             "every dataset, or none (in proportion to their sizes)")
        if weights and loader.get("loader", "workers") == "device":
            raise ValueError("data.weights needs data.loader=workers (the device loader draws "
                             "every image once per epoch)")
        self.members = dict(datasets)
        self.dataset_names = list(datasets)
        self.weights = weights
        self.seed = seed
        self.parts: dict[str, dict[str, ArrayDataset]] = {}
        self._train_sizes: dict[str, int] = {}

    def prepare_data(self) -> None:
        for member in self.members.values():
            member.prepare_data()

    def load_splits(self, stage: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each member's splits at ``image_size``; this module's splits are their union."""
        per_split: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for name, member in self.members.items():
            member.setup(stage)
            for split, source in (("train", "train"), ("val", "val"),
                                  ("test", member.test_split)):
                if source in member.datasets:
                    dataset = member.datasets[source]
                    per_split.setdefault(split, {})[name] = (
                        resized_stack(dataset.images, self.image_size), dataset.labels)
        eval_preset = GrayPreset(self.image_size, train=False)
        for split in ("val", "test"):
            self.parts[split] = {name: ArrayDataset(images, labels, eval_preset)
                                 for name, (images, labels) in per_split.get(split, {}).items()}
        self._train_sizes = {name: len(labels) for name, (_, labels)
                             in per_split.get("train", {}).items()}
        return {split: (np.concatenate([p[0] for p in parts.values()]),
                        np.concatenate([p[1] for p in parts.values()]))
                for split, parts in per_split.items()}

    def _keep_faces(self, classes: list[str]) -> None:
        """Also in each dataset's validation and test parts, and its count of training faces."""
        if "train" in self.datasets:
            kept = np.isin(self.datasets["train"].labels,
                           [self.class_names.index(c) for c in classes])
            bounds = np.cumsum([0, *self._train_sizes.values()])
            self._train_sizes = {name: int(kept[start:end].sum()) for name, start, end
                                 in zip(self._train_sizes, bounds[:-1], bounds[1:])}
        super()._keep_faces(classes)
        self.parts = {split: {name: faces_of(ds, self.class_names, classes)
                              for name, ds in parts.items()}
                      for split, parts in self.parts.items()}

    def describe(self) -> str:
        return super().describe() + "; " + ", ".join(
            f"{name}: train={n}" for name, n in self._train_sizes.items())

    def train_dataloader(self):
        if not self.weights or self.loader == "device":
            return super().train_dataloader()
        share = np.concatenate([np.full(n, self.weights[name] / n)
                                for name, n in self._train_sizes.items()])
        generator = torch.Generator().manual_seed(self.seed)
        sampler = WeightedRandomSampler(torch.from_numpy(share), len(share), replacement=True,
                                        generator=generator)
        return build_loader(self.datasets["train"], self.batch_size, False, self.num_workers,
                            self.pin_memory, self.trainer, sampler=sampler)

    def _per_dataset(self, split: str) -> list[DataLoader]:
        return [build_loader(self.parts[split][name], self.batch_size, False, self.num_workers,
                             self.pin_memory, self.trainer) for name in self.dataset_names]

    def val_dataloader(self) -> list[DataLoader]:
        return self._per_dataset("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._per_dataset("test")

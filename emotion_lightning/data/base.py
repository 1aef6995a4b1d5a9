"""The shared LightningDataModule for in-memory gray-image splits (FER, synthetic, wild)."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Sequence
from typing import TypedDict

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from emotion_lightning.constants import (
    EMOTION_ALIASES,
    FER_EMOTIONS,
    canonical_emotion,
    class_positions,
)
from emotion_lightning.data.batch_augment import BatchAugment
from emotion_lightning.data.cross_fit import STATE_KEY, CrossFit, face_folds
from emotion_lightning.data.device_loader import DeviceBatches, ShardSampler, resized_stack
from emotion_lightning.data.presets import GrayPreset, inert_strengths
from emotion_lightning.runtime import auto_num_workers

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
#: The splits each Lightning stage needs (any other stage, or None, needs all of them).
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                "predict": ("test",)}
#: ``data.loader``: DataLoader workers augmenting per image, or the device-resident loader.
LOADERS = ("workers", "device")


class ArrayDataset(Dataset):
    """uint8 ``[N, H, W]`` gray images and int labels, transformed on access."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(np.asarray(self.images[index])), int(self.labels[index])


class SoftTargetDataset(ArrayDataset):
    """:class:`ArrayDataset` whose targets are float32 class probabilities ``[C]`` (FER+ vote
    distributions, a teacher's soft labels); ``labels`` (default: each row's most likely
    class) are what class counts and balanced weights read. The targets are a tensor in shared
    memory, so rewriting them in place reaches running DataLoader workers (self-distillation)."""

    def __init__(self, images, targets: np.ndarray, transform,
                 labels: np.ndarray | None = None) -> None:
        targets = np.asarray(targets, np.float32)
        super().__init__(images, targets.argmax(axis=1) if labels is None else labels, transform)
        if targets.shape[0] != len(self.labels):
            raise ValueError(f"{targets.shape[0]} target rows for {len(self.labels)} images")
        # share_memory_ copies the rows into shared memory: the caller keeps its own array
        self.targets = torch.from_numpy(targets).share_memory_()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, _ = super().__getitem__(index)
        return image, self.targets[index].clone()


def faces_of(dataset: ArrayDataset, class_names: Sequence[str],
             classes: Sequence[str]) -> ArrayDataset:
    """The faces of ``dataset`` (labelled by ``class_names``) of ``classes``, relabelled in
    their order (:func:`select_classes`); soft targets keep those columns, renormalised."""
    rows, labels = select_classes(dataset.labels, class_names, classes)
    images = dataset.images[rows]
    if isinstance(dataset, SoftTargetDataset):
        columns = class_positions(classes, class_names, "classes", "these faces")
        targets = dataset.targets.numpy()[rows][:, columns]
        targets = targets / np.clip(targets.sum(axis=1, keepdims=True), 1e-12, None)
        return SoftTargetDataset(images, targets, dataset.transform, labels=labels)
    return ArrayDataset(images, labels, dataset.transform)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int | None,
    pin_memory: bool | None,
    trainer=None,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader with this project's defaults.

    ``num_workers=None`` sizes the workers against the cores of each of the trainer's
    processes; ``pin_memory=None`` pins when CUDA is available; training (``shuffle``, or a
    training ``sampler`` such as weighted draws) drops the last incomplete batch.
    """
    if num_workers is None:
        num_workers = auto_num_workers(trainer.num_devices if trainer is not None else 1)
    training = shuffle or sampler is not None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=num_workers > 0,
        drop_last=training and len(dataset) > batch_size,
    )


#: The emotion names a datamodule's ``classes`` may hold: FER2013's seven, and contempt.
KNOWN_CLASSES: tuple[str, ...] = tuple(dict.fromkeys([*FER_EMOTIONS, *EMOTION_ALIASES.values()]))


def check_classes(classes: Sequence[str]) -> list[str]:
    """The canonical names of ``classes``; fails before anything is built or read when a name
    is not an emotion (with the nearest known name), appears twice, or there are fewer than 2."""
    if isinstance(classes, str):
        raise ValueError(f"data.classes must be a list of emotion names, got the string {classes!r}")
    names = [canonical_emotion(c) for c in classes]
    unknown = [c for c in names if c not in KNOWN_CLASSES]
    if unknown:
        hints = [f"{c!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(
            c, KNOWN_CLASSES, n=1)) else repr(c) for c in unknown]
        raise ValueError(f"data.classes {list(classes)}: {', '.join(hints)} is not an emotion "
                         f"name; choose from {list(KNOWN_CLASSES)}")
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise ValueError(f"data.classes {list(classes)} names {repeated} more than once (aliases "
                         "such as anger/angry count as one); each class must appear once")
    if len(names) < 2:
        raise ValueError(f"data.classes {list(classes)}: a classifier needs at least two classes")
    return names


def select_classes(
    labels: np.ndarray, source_names: Sequence[str], classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the samples of ``classes`` and relabel them 0..len(classes)-1 in that order.

    Returns (indices kept, new labels).
    """
    remap = np.full(len(source_names), -1, dtype=np.int64)
    positions = class_positions(classes, source_names, "classes", "this dataset")
    remap[positions] = np.arange(len(positions))
    new_labels = remap[np.asarray(labels, dtype=np.int64)]
    keep = np.flatnonzero(new_labels >= 0)
    return keep, new_labels[keep]


class LoaderOptions(TypedDict, total=False):
    """The keywords every datamodule passes on to :class:`GrayImageDataModule` (see there)."""

    image_size: int
    batch_size: int
    num_workers: int | None
    augment: bool
    augmentation: dict | None
    pin_memory: bool | None
    loader: str
    cross_fit_folds: int
    cross_fit_fold: int | None
    cross_fit_seed: int


class SplitLoaders:
    """DataLoader hooks over ``self.datasets[split]`` with :func:`build_loader`'s defaults, for
    datamodules with ``batch_size``, ``num_workers`` and ``pin_memory``; ``test`` and
    ``predict`` read ``test_split``."""

    test_split = "test"

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return build_loader(self.datasets[split], self.batch_size, shuffle, self.num_workers,
                            self.pin_memory, self.trainer)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_split, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_split, shuffle=False)


class GrayImageDataModule(SplitLoaders, L.LightningDataModule):
    """Base class: subclasses implement :meth:`load_splits` returning uint8 images per split.

    Subclasses take their own arguments and pass ``classes`` and ``**loader``
    (:class:`LoaderOptions`: the arguments below, with these defaults) on to this class.

    Args:
        classes: ordered class names; label ``i`` is ``classes[i]``.
        image_size: side of the square model input (native images are resized).
        batch_size: per-process batch size.
        num_workers: DataLoader workers per process; ``None`` sizes them so that workers and
            torch threads together never oversubscribe the cores.
        augment: apply the training augmentation preset to the train split.
        augmentation: keyword overrides for :class:`GrayPreset` (rotate, translate, scale, ...).
        pin_memory: page-locked batches for faster GPU copies; ``None`` pins when CUDA is there.
        loader: ``workers``: a DataLoader whose workers augment image by image on the host
            (:class:`GrayPreset`; ``num_workers``, ``pin_memory``). ``device``: every split's
            uint8 images are moved to the training device once (resized to ``image_size``
            by the same function) and each batch is sampled, augmented (:class:`BatchAugment`,
            the same augmentation) and normalised there: :class:`DeviceBatches`, one shard
            per DDP process; the workers and pinning options are not used.
        cross_fit_folds, cross_fit_fold, cross_fit_seed: train without fold ``cross_fit_fold``
            of ``cross_fit_folds`` (a face's fold: :func:`~emotion_lightning.data.cross_fit.
            face_folds` with ``cross_fit_seed``): a teacher that can label that fold's faces
            out of sample. The checkpoint records it; ``None``: train on every face.
    """

    #: The side every image of the dataset has, where one does (FER2013: 48): an ensemble reads
    #: the images at it (:func:`~emotion_lightning.evaluation.data_image_size`).
    NATIVE_SIZE: int | None = None

    #: The emotions the dataset labels (canonical names), or None when they come from its
    #: files (class folders): read by cross-dataset evaluation.
    DATASET_CLASSES: tuple[str, ...] | None = None

    #: True where a fit may go without a validation split (FER's ``val_fraction=0``: a refit).
    validation_optional: bool = False

    def __init__(
        self,
        classes: Sequence[str],
        image_size: int = 48,
        batch_size: int = 64,
        num_workers: int | None = None,
        augment: bool = True,
        augmentation: dict | None = None,
        pin_memory: bool | None = None,
        loader: str = "workers",
        cross_fit_folds: int = 1,
        cross_fit_fold: int | None = None,
        cross_fit_seed: int = 0,
    ) -> None:
        super().__init__()
        if loader not in LOADERS:
            raise ValueError(f"data.loader must be one of {LOADERS}, got {loader!r}")
        self.class_names = check_classes(classes)
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.augmentation = dict(augmentation or {})
        inert = inert_strengths(self.augmentation) if augment else []
        if inert:
            log.warning("data.augmentation: %s change nothing while their probability is 0; "
                        "set it above 0 to apply them", ", ".join(inert))
        self.pin_memory = pin_memory
        self.loader = loader
        if cross_fit_fold is None and cross_fit_folds != 1:
            raise ValueError(f"data.cross_fit_folds={cross_fit_folds} needs data.cross_fit_fold "
                             "(the fold to train without, 0 to folds - 1)")
        self.cross_fit = (None if cross_fit_fold is None
                          else CrossFit(cross_fit_folds, cross_fit_fold, cross_fit_seed))
        self.datasets: dict[str, ArrayDataset] = {}
        self._on_device: dict[tuple[str, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def load_splits(self, stage: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{split: (uint8 images [N,H,W], labels in 0..C-1)}`` for the splits ``stage`` needs."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        needed = STAGE_SPLITS.get(stage or "", SPLITS)
        if self.validation_optional and stage != "validate":
            needed = tuple(s for s in needed if s != "val")
        if all(s in self.datasets for s in needed):
            return
        for split, (images, labels) in self.load_splits(stage).items():
            if split == "train" and self.cross_fit is not None:
                images, labels = self._without_held_out_fold(images, labels)
            train = split == "train" and self.augment
            preset = GrayPreset(self.image_size, train=train, **(self.augmentation if train else {}))
            self.datasets[split] = ArrayDataset(images, labels, preset)
        missing = [s for s in needed if s not in self.datasets or len(self.datasets[s]) == 0]
        if missing:
            hint = (" (data.val_fraction=0 holds no validation faces out of Training)"
                    if self.validation_optional and "val" in missing else "")
            raise ValueError(f"{type(self).__name__}: no samples in split(s) {missing}{hint}")
        log.info("%s: %s", type(self).__name__, self.describe())

    def _without_held_out_fold(self, images: np.ndarray,
                               labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cf = self.cross_fit
        keep = face_folds(images, cf.folds, cf.seed) != cf.fold
        log.info("cross-fitting: training without fold %d of %d (%d of %d faces held out)",
                 cf.fold, cf.folds, int((~keep).sum()), len(keep))
        return images[keep], labels[keep]

    def state_dict(self) -> dict:
        """What the checkpoint records of the data: the cross-fit (``None``: every face)."""
        return {STATE_KEY: self.cross_fit.as_dict() if self.cross_fit else None}

    def load_state_dict(self, state_dict: dict) -> None:
        """Resuming a fit: its cross-fit must be this datamodule's."""
        saved = CrossFit(**state_dict[STATE_KEY]) if state_dict.get(STATE_KEY) else None
        if saved != self.cross_fit:
            raise ValueError(f"the checkpoint was trained with cross-fit {saved}, this run has "
                             f"{self.cross_fit}: resume with the same data.cross_fit_folds, "
                             "data.cross_fit_fold and data.cross_fit_seed")

    def has_validation(self) -> bool:
        """Whether fitting has a validation split (where it is optional, this loads the
        fit's splits to know)."""
        if not self.validation_optional:
            return True
        self.setup("fit")
        return "val" in self.datasets

    def val_dataloader(self):
        """The validation loader; none (an empty list: Lightning skips validation) when
        :meth:`has_validation` is false."""
        return super().val_dataloader() if self.has_validation() else []

    def _loader(self, split: str, shuffle: bool):
        if self.loader == "workers":
            return super()._loader(split, shuffle)
        return self.device_batches(split, shuffle)

    def device_batches(self, split: str, shuffle: bool) -> DeviceBatches:
        """The device-resident loader of ``split`` for this process (``loader=device``).

        Outside a Trainer: on the CPU, one process. Shuffled batches use the run's seed
        (``torch.initial_seed()``, rank 0's under DDP) and drop the last incomplete one;
        ``overfit_batches`` turns shuffling off, as Lightning does for DataLoaders.
        """
        trainer = self.trainer
        device, rank, world = torch.device("cpu"), 0, 1
        seed = torch.initial_seed()
        if trainer is not None:
            device, rank, world = trainer.strategy.root_device, trainer.global_rank, trainer.world_size
            seed = trainer.strategy.broadcast(seed) if world > 1 else seed
            shuffle = shuffle and not trainer.overfit_batches
        images, labels = self._device_arrays(split, device)
        sampler = ShardSampler(len(labels), self.batch_size, rank, world, shuffle=shuffle,
                               drop_last=shuffle, seed=seed, device=device)
        train = split == "train" and self.augment
        augment = BatchAugment(self.image_size, **self.augmentation) if train else None
        return DeviceBatches(images, labels, sampler, augment, seed)

    def _device_arrays(self, split: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``split``'s uint8 images at ``image_size`` and labels on ``device``, made once."""
        if (split, device) not in self._on_device:
            dataset = self.datasets[split]
            images = torch.from_numpy(resized_stack(dataset.images, self.image_size))
            labels = torch.from_numpy(dataset.labels)
            self._on_device[split, device] = (images.to(device), labels.to(device))
        return self._on_device[split, device]

    def describe(self) -> str:
        """Per-split, per-class sample counts as a short string."""
        parts = []
        for split, ds in self.datasets.items():
            counts = np.bincount(ds.labels, minlength=len(self.class_names))
            parts.append(f"{split}={len(ds)} " + dict(zip(self.class_names, counts.tolist())).__repr__())
        return "; ".join(parts)

    def train_faces(self) -> tuple[np.ndarray, np.ndarray]:
        """The training split's uint8 faces ``[N, H, W]`` and int labels, unaugmented."""
        self.setup("fit")
        train = self.datasets["train"]
        return train.images, train.labels

    def set_train_targets(self, targets: np.ndarray) -> None:
        """Train on class probabilities ``targets`` (``[N, C]``, in :meth:`train_faces`
        order) instead of the labels: soft labels, e.g. a teacher's for distillation. Only the
        DataLoader path carries them (``loader=workers``)."""
        if self.loader != "workers":
            raise ValueError("soft training targets need data.loader=workers (the device loader "
                             "carries one label per image)")
        train = self.datasets["train"]
        self.datasets["train"] = SoftTargetDataset(train.images, targets, train.transform,
                                                   labels=train.labels)

    def keep_classes(self, classes: Sequence[str], stages: Sequence[str]) -> None:
        """Set up ``stages``, then keep only the faces of ``classes`` (some of
        ``class_names``, relabelled in their order) in every split set up: the splits stay the
        ones made for all of ``class_names``, so a model of all of them is scored on faces it
        was validated and tested on, never on ones it trained on (splitting the subset anew
        would draw other validation faces)."""
        positions = class_positions(classes, self.class_names, "keep_classes", "this datamodule", 2)
        kept = [self.class_names[i] for i in positions]
        for stage in stages:
            self.setup(stage)
        self._keep_faces(kept)
        self.class_names = kept
        self._on_device.clear()

    def _keep_faces(self, classes: list[str]) -> None:
        """Keep the faces of ``classes`` in every split set up (:func:`faces_of`)."""
        self.datasets = {split: faces_of(ds, self.class_names, classes)
                         for split, ds in self.datasets.items()}

    def class_counts(self, split: str = "train") -> list[int]:
        """Samples per class in ``split`` (used for balanced class weights)."""
        if split not in self.datasets:
            self.setup("fit" if split in ("train", "val") else "test")
        return np.bincount(self.datasets[split].labels, minlength=len(self.class_names)).tolist()

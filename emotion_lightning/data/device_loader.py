"""The device-resident loader (``data.loader=device``): a split's uint8 images held on the
training device, batches sampled, augmented and normalised there.

:class:`ShardSampler` is the order of ``DistributedSampler`` (seeded per epoch, the same on
every process, padded to a multiple of the world size, rank ``r`` taking every world-size-th
index from ``r``), computed on the device. :class:`DeviceBatches` is the iterable Lightning
consumes in place of a ``DataLoader``: its batches are already on the device (Lightning's
``transfer_batch_to_device`` leaves tensors there as they are), ``len()`` is the batch count,
Lightning calls ``sampler.set_epoch`` every epoch, and ``state_dict``/``load_state_dict`` let a
run resumed mid-epoch (``ckpt_path=last``) go on with the very batches it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch

from emotion_lightning.data.batch_augment import BatchAugment, normalize_gray
from emotion_lightning.images import resize_square


def resized_stack(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[N, H, W]`` -> uint8 ``[N, size, size]`` through the preset's own
    :func:`resize_square` (so both loaders see the same pixels); as it is when already that size."""
    if images.shape[1:] == (size, size):
        return np.array(images, dtype=np.uint8)  # a writable copy (the split may be memory-mapped)
    out = np.empty((len(images), size, size), np.uint8)
    for i, image in enumerate(images):
        out[i] = resize_square(np.asarray(image), size)
    return out


def mixed_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, epoch, rank, batch...), well spread."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


class ShardSampler:
    """This process's sample indices for each epoch, as a tensor on ``device``.

    Args:
        num_samples: size of the split.
        batch_size: samples per batch (per process).
        rank, world_size: this process and the number of processes.
        shuffle: a new seeded permutation every epoch (the same on every rank); else in order.
        drop_last: drop the last incomplete batch when the shard holds more than one batch
            (the training DataLoader's rule).
        seed: the run's seed (every rank must pass the same).
    """

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 shuffle: bool = True, drop_last: bool = True, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        if num_samples < 1 or batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"ShardSampler needs samples and a batch size >= 1 and 0 <= rank < "
                             f"world_size, got {num_samples}, {batch_size}, {rank}, {world_size}")
        self.num_samples, self.batch_size = num_samples, batch_size
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.seed, self.device = shuffle, seed, torch.device(device)
        self.shard_size = math.ceil(num_samples / world_size)
        self.drop_last = drop_last and self.shard_size > batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches per epoch."""
        if self.drop_last:
            return self.shard_size // self.batch_size
        return math.ceil(self.shard_size / self.batch_size)

    def indices(self) -> torch.Tensor:
        """This rank's indices of the current epoch (``shard_size`` of them, on the device)."""
        if self.shuffle:
            generator = torch.Generator(self.device).manual_seed(mixed_seed(self.seed, self.epoch))
            order = torch.randperm(self.num_samples, generator=generator, device=self.device)
        else:
            order = torch.arange(self.num_samples, device=self.device)
        padding = self.shard_size * self.world_size - self.num_samples
        if padding:  # DistributedSampler repeats the first indices to even out the shards
            order = torch.cat([order, order.repeat(math.ceil(padding / self.num_samples))[:padding]])
        return order[self.rank::self.world_size]

    def batches(self) -> list[torch.Tensor]:
        """The epoch's index batches, ``len(self)`` of them."""
        return list(self.indices().split(self.batch_size))[: len(self)]


class DeviceBatches:
    """``(images, labels)`` batches of one split, made on the device of ``images``.

    Args:
        images: uint8 ``[N, S, S]`` at the model's input size, on the training device.
        labels: int64 ``[N]`` on the same device.
        sampler: which indices each batch takes.
        augment: the training augmentation (``None``: normalisation only, as for val/test).
        seed: the run's seed; batch ``k`` of epoch ``e`` on rank ``r`` is augmented from a
            generator seeded with (seed, e, r, k), so any batch can be remade on resume.
    """

    #: DataLoader's interface, read by Lightning with ``sampler`` (whose epoch it sets).
    batch_sampler = None

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, sampler: ShardSampler,
                 augment: BatchAugment | None = None, seed: int = 0) -> None:
        if images.dtype != torch.uint8 or images.ndim != 3 or len(images) != len(labels):
            raise ValueError(f"DeviceBatches takes uint8 [N, S, S] images and N labels, got "
                             f"{images.dtype} {tuple(images.shape)} and {len(labels)} labels")
        self.images, self.labels = images, labels
        self.sampler, self.augment, self.seed = sampler, augment, seed
        self._position = (0, 0)  # (epoch, batches yielded in it)
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.sampler.epoch
        start = 0
        if self._resume is not None:
            resume_epoch, done = self._resume
            start = done if resume_epoch == epoch else 0
            self._resume = None
        generator = torch.Generator(self.images.device)
        for k, index in enumerate(self.sampler.batches()[start:], start):
            x = self.images[index]
            if self.augment is None:
                x = normalize_gray(x)
            else:
                generator.manual_seed(mixed_seed(self.seed, epoch, self.sampler.rank, k))
                x = self.augment(x, generator)
            self._position = (epoch, k + 1)
            yield x, self.labels[index]

    def state_dict(self) -> dict[str, int]:
        """Where this epoch's iteration is: saved in Lightning checkpoints."""
        epoch, done = self._position
        return {"epoch": epoch, "batches": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Go on after batch ``state["batches"]`` when iterating epoch ``state["epoch"]`` again."""
        self._resume = (int(state["epoch"]), int(state["batches"]))

"""Cross-fitting: training faces in seeded folds, so that a teacher trained without one fold
can label those faces out of sample (offline distillation's soft labels)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

#: Where a datamodule's checkpoint state (``state_dict``) records its cross-fit.
STATE_KEY = "cross_fit"


@dataclass(frozen=True)
class CrossFit:
    """Train without fold ``fold`` of ``folds`` (fold of a face: :func:`face_folds` with
    ``seed``)."""

    folds: int
    fold: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.folds < 2 or not 0 <= self.fold < self.folds:
            raise ValueError(f"cross-fitting trains without fold data.cross_fit_fold of "
                             f"data.cross_fit_folds: needs folds >= 2 and 0 <= fold < folds, got "
                             f"fold {self.fold} of {self.folds}")

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping) -> CrossFit | None:
        """The cross-fit a Lightning checkpoint's datamodule state records (Lightning stores
        it under the datamodule's class name), or None for a fit on every fold."""
        for value in checkpoint.values():
            if isinstance(value, Mapping) and isinstance(value.get(STATE_KEY), Mapping):
                return cls(**value[STATE_KEY])
        return None


def records_cross_fit(checkpoint: Mapping) -> bool:
    """Whether a Lightning checkpoint holds a datamodule's cross-fit record (``None`` included).
    Those without one were written before cross-fitting existed, or without these datamodules:
    fits on every face they were given."""
    return any(isinstance(value, Mapping) and STATE_KEY in value for value in checkpoint.values())


def face_folds(images: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Fold (``0..folds-1``) of each image, from a seeded hash of its pixels: identical images
    share a fold, and a face keeps its fold whatever split, order or subset it comes in."""
    key = seed.to_bytes(8, "little", signed=True)
    out = np.empty(len(images), dtype=np.int64)
    for i, image in enumerate(images):
        digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=8, key=key)
        out[i] = int.from_bytes(digest.digest(), "little") % folds
    return out

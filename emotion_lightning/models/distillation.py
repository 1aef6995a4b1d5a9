"""Knowledge distillation's teacher side: the teachers' averaged softened probabilities."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from emotion_lightning.data.presets import normalize_batch
from emotion_lightning.models.test_time import resized


def _tempered(teacher: torch.nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    """``softmax(logits / temperature)`` of one teacher on ``x`` (already at its input size)."""
    with torch.no_grad():
        return F.softmax(teacher(x).float() / temperature, dim=1)


def softened(teachers: Sequence[torch.nn.Module], x: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """The mean over ``teachers`` of ``softmax(logits / temperature)`` of the normalised
    batch ``x``, each teacher seeing it at its own ``hparams.image_size``."""
    return torch.stack([_tempered(teacher, resized(x, teacher.hparams.image_size), temperature)
                        for teacher in teachers]).mean(dim=0)


def soft_labels(teachers: Sequence[torch.nn.Module], faces: np.ndarray, temperature: float,
                device: torch.device, context=None, batch_size: int = 256, progress: bool = True,
                desc: str = "teacher soft labels") -> np.ndarray:
    """The teachers' mean softened probabilities (:func:`softened`) of each unaugmented face
    (``faces``: uint8 ``[N, H, W]``), each teacher reading the faces made at its own
    ``image_size`` as its training data was, in batches of ``batch_size`` inside ``context``
    (e.g. the trainer's autocast), behind a progress bar named ``desc``; float32 ``[N, C]``."""
    sizes = [int(t.hparams.image_size) for t in teachers]
    chunks = []
    starts = range(0, len(faces), batch_size)
    with context or contextlib.nullcontext():
        for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
            views = {size: normalize_batch(faces[start:start + batch_size], size).to(device)
                     for size in set(sizes)}
            soft = torch.stack([_tempered(teacher, views[size], temperature)
                                for teacher, size in zip(teachers, sizes)]).mean(dim=0)
            chunks.append(soft.cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def distillation_targets(teachers: Sequence[torch.nn.Module], faces: np.ndarray,
                         labels: np.ndarray, temperature: float, weight: float,
                         device: torch.device, context=None, batch_size: int = 256,
                         progress: bool = True) -> np.ndarray:
    """Offline distillation's training targets: ``(1 - weight) * one-hot(labels) + weight *``
    the teachers' :func:`soft_labels` of ``faces``; float32 ``[N, C]``."""
    soft = soft_labels(teachers, faces, temperature, device, context, batch_size, progress)
    onehot = np.eye(soft.shape[1], dtype=np.float32)[np.asarray(labels)]
    return ((1.0 - weight) * onehot + weight * soft).astype(np.float32)

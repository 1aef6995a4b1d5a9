"""Knowledge distillation's teacher side: the teachers' averaged softened probabilities (out
of sample where the teachers were cross-fitted)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from emotion_lightning.constants import class_positions
from emotion_lightning.data.cross_fit import CrossFit, face_folds
from emotion_lightning.data.presets import normalize_batch
from emotion_lightning.models.test_time import average_probabilities, resized


class TeacherOnClasses(torch.nn.Module):
    """A teacher's logits of ``class_names`` only, in that order: a teacher of more classes
    (a seven-class network) teaching a student of some of them (five), whose softened
    probabilities are then the teacher's on those classes, renormalised. Reads its input at
    the teacher's ``hparams.image_size``."""

    def __init__(self, teacher: torch.nn.Module, class_names: Sequence[str]) -> None:
        super().__init__()
        self.columns = class_positions(class_names, teacher.class_names,
                                       "its student's classes", "this teacher")
        self.teacher = teacher
        self.hparams = teacher.hparams
        self.class_names = list(class_names)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.teacher(x)[:, self.columns]


def _tempered(teacher: torch.nn.Module, x: torch.Tensor, temperature: float,
              flip: bool = False) -> torch.Tensor:
    """``softmax(logits / temperature)`` of one teacher on ``x`` (already at its input size);
    with ``flip``, averaged over ``x`` and its mirror (:func:`average_probabilities`)."""
    with torch.no_grad():
        return average_probabilities(lambda v: teacher(v).float() / temperature, x, flip)


def softened(teachers: Sequence[torch.nn.Module], x: torch.Tensor,
             temperature: float, flip: bool = False) -> torch.Tensor:
    """The mean over ``teachers`` of ``softmax(logits / temperature)`` of the normalised
    batch ``x`` (and of its mirror: ``flip``), each teacher seeing it at its own
    ``hparams.image_size``."""
    return torch.stack([_tempered(teacher, resized(x, teacher.hparams.image_size), temperature,
                                  flip) for teacher in teachers]).mean(dim=0)


def soft_labels(teachers: Sequence[torch.nn.Module], faces: np.ndarray, temperature: float,
                device: torch.device, context=None, batch_size: int = 256, progress: bool = True,
                desc: str = "teacher soft labels", flip: bool = False) -> np.ndarray:
    """The teachers' mean softened probabilities (:func:`softened`) of each unaugmented face
    (``faces``: uint8 ``[N, H, W]``; and of its mirror: ``flip``), each teacher reading the
    faces made at its own ``image_size`` as its training data was, in batches of
    ``batch_size`` inside ``context`` (e.g. the trainer's autocast), behind a progress bar
    named ``desc``; float32 ``[N, C]``."""
    sizes = [int(t.hparams.image_size) for t in teachers]
    chunks = []
    starts = range(0, len(faces), batch_size)
    with context or contextlib.nullcontext():
        for start in tqdm(starts, desc=desc, unit="batch", disable=not progress):
            views = {size: normalize_batch(faces[start:start + batch_size], size).to(device)
                     for size in set(sizes)}
            soft = torch.stack([_tempered(teacher, views[size], temperature, flip)
                                for teacher, size in zip(teachers, sizes)]).mean(dim=0)
            chunks.append(soft.cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def teacher_groups(cross_fits: Sequence[CrossFit | None],
                   faces: np.ndarray) -> list[tuple[np.ndarray, list[int]]]:
    """``(face indices, teacher indices)`` pairs: which teachers label which faces. Teachers
    fitted on every face (cross-fit ``None``) all label every face; cross-fitted teachers
    (all of one ``folds`` and ``seed``) label only the fold each was trained without."""
    everyone = [(np.arange(len(faces)), list(range(len(cross_fits))))]
    fitted = [cf for cf in cross_fits if cf is not None]
    if not fitted:
        return everyone
    if len(fitted) < len(cross_fits):
        raise ValueError("model.teacher mixes cross-fitted teachers (trained without a fold of "
                         "data.cross_fit_folds) with teachers trained on every face: their soft "
                         "labels would be out of sample for some faces only; pass one kind")
    if len({(cf.folds, cf.seed) for cf in fitted}) > 1:
        raise ValueError("model.teacher were cross-fitted with different folds or seeds "
                         f"({sorted({(cf.folds, cf.seed) for cf in fitted})}: (folds, seed)); "
                         "their folds do not line up")
    folds, seed = fitted[0].folds, fitted[0].seed
    fold_of = face_folds(faces, folds, seed)
    groups = [(np.flatnonzero(fold_of == f), [i for i, cf in enumerate(fitted) if cf.fold == f])
              for f in range(folds)]
    missing = [f for f, (idx, members) in enumerate(groups) if len(idx) and not members]
    if missing:
        raise ValueError(f"no teacher was trained without fold(s) {missing} of {folds}, so no "
                         f"teacher can label those faces out of sample: train one per fold "
                         f"(data.cross_fit_folds={folds} data.cross_fit_fold={missing[0]} "
                         f"data.cross_fit_seed={seed}) and add it to model.teacher")
    return [(idx, members) for idx, members in groups if len(idx)]


def distillation_targets(teachers: Sequence[torch.nn.Module], faces: np.ndarray,
                         labels: np.ndarray, temperature: float, weight: float,
                         device: torch.device, context=None, batch_size: int = 256,
                         progress: bool = True,
                         cross_fits: Sequence[CrossFit | None] | None = None,
                         flip: bool = False) -> np.ndarray:
    """Offline distillation's training targets: ``(1 - weight) * one-hot(labels) + weight *``
    the teachers' :func:`soft_labels` of ``faces`` (and their mirrors: ``flip``; each face
    from the teachers
    :func:`teacher_groups` gives it, by ``cross_fits``: one per teacher), all inside one
    ``context`` (a trainer's ``forward_context()`` can be entered once); float32 ``[N, C]``."""
    groups = teacher_groups(cross_fits or [None] * len(teachers), faces)
    with context or contextlib.nullcontext():
        parts = [soft_labels([teachers[i] for i in members], faces[idx], temperature, device,
                             None, batch_size, progress, "teacher soft labels" if len(groups) == 1
                             else f"out-of-fold soft labels ({len(idx)} faces)", flip)
                 for idx, members in groups]
    soft = np.zeros((len(faces), parts[0].shape[1]), np.float32)
    for (idx, _), part in zip(groups, parts):
        soft[idx] = part
    onehot = np.eye(soft.shape[1], dtype=np.float32)[np.asarray(labels)]
    return ((1.0 - weight) * onehot + weight * soft).astype(np.float32)

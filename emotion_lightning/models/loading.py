"""Loading classifiers for evaluation and use: one checkpoint, or an ensemble of several."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from emotion_lightning.models.classifier import EmotionClassifier
from emotion_lightning.models.ensemble import ClassifierEnsemble


def load_classifier(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    test_time_flip: bool | None = None,
    test_time_shift: int | None = None,
    test_time_crop: int | None = None,
    prior_tau: float | None = None,
) -> EmotionClassifier:
    """An EmotionClassifier from its checkpoint (read once, weights-only), in eval mode.

    ``test_time_flip``/``test_time_shift``/``test_time_crop``/``prior_tau`` override the
    checkpoint's settings when not ``None`` (giving a crop turns the checkpoint's shifts off).
    """
    model = EmotionClassifier.from_checkpoint(Path(path).expanduser(), map_location)
    if test_time_flip is not None:
        model.hparams.test_time_flip = bool(test_time_flip)
    if test_time_shift is not None:
        if int(test_time_shift) < 0:
            raise ValueError(f"test_time_shift must be >= 0 pixels, got {test_time_shift}")
        model.hparams.test_time_shift = int(test_time_shift)
    if test_time_crop is not None:
        crop = int(test_time_crop)
        if not 0 <= crop <= model.hparams.image_size:
            raise ValueError(f"test_time_crop must be 0 (off) or a crop side up to the model's "
                             f"image_size={model.hparams.image_size}, got {crop}")
        model.hparams.test_time_crop = crop
        if crop and test_time_shift is None:
            model.hparams.test_time_shift = 0
    if prior_tau is not None:
        model.hparams.prior_tau = checked_prior_tau(prior_tau)
    return model


def checked_prior_tau(value) -> float:
    """``value`` as a prior-correction tau (a number >= 0), or a clear error."""
    try:
        tau = float(value)
    except (TypeError, ValueError):
        tau = -1.0
    if not tau >= 0:
        raise ValueError(f"prior_tau must be a number >= 0 (0: no prior correction), got {value!r}")
    return tau


def load_model(
    paths: str | Path | Sequence[str | Path],
    map_location: str | torch.device = "cpu",
    test_time_flip: bool | None = None,
    test_time_shift: int | None = None,
    test_time_crop: int | None = None,
    prior_tau: float | None = None,
) -> EmotionClassifier | ClassifierEnsemble:
    """One checkpoint's classifier, or the ensemble of several (their probabilities averaged);
    the test-time overrides apply to every member (see :func:`load_classifier`), ``prior_tau``
    to the ensemble as a whole."""
    many = not isinstance(paths, (str, Path))
    listed = [Path(p) for p in paths] if many else [Path(paths)]
    if not listed:
        raise ValueError("ckpt_path: give a checkpoint or a non-empty list of checkpoints")
    members = [load_classifier(p, map_location, test_time_flip, test_time_shift, test_time_crop,
                               prior_tau) for p in listed]
    if not many or len(members) == 1:
        return members[0]
    return ClassifierEnsemble(members, [str(p) for p in listed]).to(map_location).eval()

"""ClassifierEnsemble: several trained classifiers evaluated and used as one."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from emotion_lightning.models.classifier import EmotionClassifier
from emotion_lightning.models.scoring import ClassScoring
from emotion_lightning.models.test_time import resized


class ClassifierEnsemble(ClassScoring):
    """The average of its members' class probabilities, each member with its own test-time
    views and input size (inputs come at any side, the largest member's ``image_size`` by
    default, and each member resamples them to its own: :func:`resized`). Members must
    classify the same classes in the same order.

    Scored like a single classifier (``trainer.test``/``validate``, ``predict_faces``); it is
    for evaluation and use, not training.
    """

    def __init__(self, members: Sequence[EmotionClassifier],
                 sources: Sequence[str] | None = None) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two classifiers, got {len(members)}")
        names = members[0].class_names
        for i, member in enumerate(members[1:], 1):
            if member.class_names != names:
                where = sources[i] if sources else f"member {i}"
                raise ValueError(f"{where} classifies {member.class_names}, the first member "
                                 f"{names}: ensemble checkpoints of the same classes and order")
        self.members = nn.ModuleList(members)
        self.save_hyperparameters({
            "class_names": list(names),
            "image_size": max(int(m.hparams.image_size) for m in members),
            "sources": list(sources or []),
            "arch": "+".join(m.hparams.arch for m in members),
            "prior_tau": sum(m.prior_tau for m in members) / len(members),
        }, logger=False)
        self.init_scoring(len(names))
        # the members' training priors, averaged (each member is trained on its own data)
        self.log_prior.copy_(torch.stack([m.log_prior.exp() for m in members]).mean(dim=0).log())
        self.prior_recorded = all(m.prior_recorded for m in members)
        self.requires_grad_(False)

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams.class_names)

    def predict_proba(self, x: torch.Tensor, shifts: bool = True,
                      corrected: bool = True) -> torch.Tensor:
        """The members' uncorrected :meth:`EmotionClassifier.predict_proba`, averaged, then
        prior-corrected with the ensemble's ``prior_tau`` (by default the members' mean)
        unless ``corrected=False``."""
        probs = torch.stack([
            member.predict_proba(resized(x, int(member.hparams.image_size)), shifts, corrected=False)
            for member in self.members]).mean(dim=0)
        return self.corrected(probs) if corrected else probs

"""Batch-level mixup and cutmix, and the cross-entropy of the soft targets they make."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class BatchMixer:
    """Mixes each training batch with a shuffled copy of itself.

    With probability ``p`` a batch is mixed: by mixup (Zhang et al.: ``lam * x + (1 - lam) *
    x[perm]``, ``lam ~ Beta(mixup_alpha, mixup_alpha)``) or by cutmix (Yun et al.: a rectangle
    of ``1 - lam`` of the area, ``lam ~ Beta(cutmix_alpha, cutmix_alpha)``, pasted from
    ``x[perm]``; ``lam`` is then the exact share of the image left). When both alphas are
    positive, each mixed batch picks one of the two at random. The targets are
    ``lam * one_hot(y) + (1 - lam) * one_hot(y[perm])``. Random draws use torch's generator,
    which ``seed_everything`` seeds.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
                 p: float = 1.0) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"model.mixup_alpha and model.cutmix_alpha must be >= 0 (0: off), "
                             f"got {mixup_alpha} and {cutmix_alpha}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"model.mix_p is a probability in [0, 1], got {p}")
        self.num_classes = num_classes
        self.mixup_alpha = float(mixup_alpha)
        self.cutmix_alpha = float(cutmix_alpha)
        self.p = float(p)

    @property
    def enabled(self) -> bool:
        return self.p > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mixed x, soft targets [N, num_classes])`` of labels ``y`` (or of class-probability
        targets ``[N, num_classes]``, mixed alike); unmixed batches get one-hot targets."""
        targets = y.float() if y.is_floating_point() else (
            F.one_hot(y, self.num_classes).to(torch.float32))
        if not self.enabled or torch.rand(()).item() >= self.p:
            return x, targets
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha == 0 or torch.rand(()).item() < 0.5)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        perm = torch.randperm(x.shape[0], device=x.device)
        if use_cutmix:
            x, lam = _paste_box(x, x[perm], lam)
        else:
            x = lam * x + (1.0 - lam) * x[perm]
        return x, lam * targets + (1.0 - lam) * targets[perm]


def _paste_box(x: torch.Tensor, other: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
    """``x`` with a random box of ``1 - lam`` of its area taken from ``other`` (clipped at the
    border), and the share of ``x`` that is left."""
    h, w = x.shape[-2:]
    cut = (1.0 - lam) ** 0.5
    bh, bw = int(h * cut), int(w * cut)
    cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
    top, bottom = max(cy - bh // 2, 0), min(cy + bh - bh // 2, h)
    left, right = max(cx - bw // 2, 0), min(cx + bw - bw // 2, w)
    x = x.clone()
    x[..., top:bottom, left:right] = other[..., top:bottom, left:right]
    return x, 1.0 - (bottom - top) * (right - left) / (h * w)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                       weight: torch.Tensor | None = None,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of class-probability ``targets`` ``[N, C]``, label-smoothed and
    class-weighted: each face's cross-entropy with its target counts by the target's expected
    class weight (``targets @ weight``: a face of a rare class counts more, but no face's
    target is tilted toward a heavy class), the smoothing term weighted per class as torch
    does; normalised by the faces' total weight. For one-hot targets it equals
    :func:`torch.nn.functional.cross_entropy` on the labels."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    weight = torch.ones(logits.shape[1], device=logits.device) if weight is None else weight
    face_weight = targets.float() @ weight.float()
    target_term = -(targets * log_probs).sum(dim=1)
    smoothing_term = -(weight * log_probs).sum(dim=1) / logits.shape[1]
    total = ((1.0 - label_smoothing) * face_weight * target_term
             + label_smoothing * smoothing_term).sum()
    return total / face_weight.sum()

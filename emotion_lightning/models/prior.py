"""Prior correction: class probabilities re-weighted against the training class frequencies.

A classifier trained on FER2013 has seen disgust in 2% of its faces and learns to predict it
that rarely. Dividing its probabilities by the training prior raised to ``tau`` (Saerens et
al. 2002; post-hoc logit adjustment, Menon et al. 2021) moves decisions towards rare classes:
``tau=0`` changes nothing, ``tau=1`` targets balanced accuracy. ``tau`` is chosen on
validation data (:func:`choose_prior_tau`), never on the test split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: The taus :func:`choose_prior_tau` tries by default.
PRIOR_TAUS = tuple(round(0.1 * i, 1) for i in range(11))
#: What :func:`choose_prior_tau` can maximise.
PRIOR_METRICS = ("acc", "balanced_acc", "macro_f1")


def balanced_class_weights(counts: Sequence[float]) -> torch.Tensor:
    """Inverse-frequency class weights ``N / (C * n_c)``: every class weighs as much in the loss
    as the others, and a uniform training set gets weights of 1."""
    counts = torch.as_tensor(counts, dtype=torch.float32)
    return counts.sum() / (len(counts) * counts.clamp(min=1))


def training_log_prior(counts: Sequence[float], class_weights: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """The log of the class prior a model was trained under: the training class counts,
    times the loss's class weights when it had some (balanced weights give a uniform prior,
    so nothing is left to correct)."""
    prior = torch.as_tensor(counts, dtype=torch.float32).clamp_min(1.0)
    if class_weights is not None:
        prior = prior * class_weights.detach().float().cpu()
    return torch.log(prior / prior.sum())


def correct_prior(probs: torch.Tensor, log_prior: torch.Tensor, tau: float) -> torch.Tensor:
    """``probs`` (``[N, C]``) divided by ``exp(log_prior) ** tau`` and renormalised;
    ``probs`` itself when ``tau`` is 0."""
    if tau == 0:
        return probs
    weighted = probs * torch.exp(-tau * log_prior.to(probs))
    return weighted / weighted.sum(dim=1, keepdim=True).clamp_min(1e-12)


def prior_scores(probs: torch.Tensor, labels: torch.Tensor, log_prior: torch.Tensor,
                 tau: float) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1 and per-class recall of the corrected ``probs``."""
    num_classes = probs.shape[1]
    predicted = correct_prior(probs, log_prior, tau).argmax(dim=1)
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    matrix.index_put_((labels.cpu(), predicted.cpu()), torch.ones(len(labels), dtype=torch.float64),
                      accumulate=True)
    true, found = matrix.sum(dim=1), matrix.sum(dim=0)
    hits = matrix.diagonal()
    recall = hits / true.clamp_min(1)
    precision = hits / found.clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    present = true > 0
    return {"tau": float(tau), "acc": float(hits.sum() / matrix.sum().clamp_min(1)),
            "balanced_acc": float(recall[present].mean()), "macro_f1": float(f1[present].mean()),
            "recall": recall.tolist()}


def choose_prior_tau(probs: torch.Tensor, labels: torch.Tensor, log_prior: torch.Tensor,
                     taus: Sequence[float] = PRIOR_TAUS, metric: str = "macro_f1"
                     ) -> tuple[float, list[dict[str, float]]]:
    """The ``tau`` of ``taus`` whose corrected ``probs`` score best on ``metric`` against
    ``labels`` (the smallest such tau on a tie), and every tau's scores."""
    if metric not in PRIOR_METRICS:
        raise ValueError(f"prior correction metric must be one of {PRIOR_METRICS}, got {metric!r}")
    if not taus or any(t < 0 for t in taus):
        raise ValueError(f"prior correction taus must be a non-empty list of numbers >= 0, "
                         f"got {list(taus)}")
    rows = [prior_scores(probs, labels, log_prior, float(t)) for t in sorted(taus)]
    best = max(rows, key=lambda r: (r[metric], -r["tau"]))
    return best["tau"], rows

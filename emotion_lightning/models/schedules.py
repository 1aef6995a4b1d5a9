"""Learning-rate schedules that know the run's length, in optimizer steps or in wall time.

Both are stepped every optimizer step. ``warmup_cosine`` is given the run's step count;
``warmup_cosine_time`` reads the share of ``trainer.max_time`` already spent (see
:func:`time_budget_progress`), so a recipe ends annealed however fast the machine is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from lightning.pytorch.callbacks import Timer
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

Progress = Callable[[], float]


def _cosine(rest: float, min_factor: float) -> float:
    """Cosine from 1 at ``rest=0`` to ``min_factor`` at ``rest>=1``."""
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(1.0, rest)))


def warmup_cosine_factor(progress: float, warmup_fraction: float, min_factor: float) -> float:
    """LR factor at ``progress`` in [0, 1]: linear warm-up, then cosine decay to ``min_factor``."""
    progress = min(1.0, max(0.0, progress))
    if progress < warmup_fraction:
        return progress / warmup_fraction
    return _cosine((progress - warmup_fraction) / (1.0 - warmup_fraction), min_factor)


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.05, min_factor: float = 0.01
) -> LambdaLR:
    """Linear warm-up over ``warmup_fraction`` of the run's steps, then cosine to ``min_factor``."""
    total_steps = max(1, int(total_steps))
    warmup = int(warmup_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return _cosine((step - warmup) / max(1, total_steps - warmup), min_factor)

    return LambdaLR(optimizer, factor)


def warmup_cosine_time(
    optimizer: Optimizer, progress: Progress, warmup_fraction: float = 0.04, min_factor: float = 0.0
) -> LambdaLR:
    """Warm-up over the first ``warmup_fraction`` of the time budget, then cosine to ``min_factor``.

    ``progress()`` returns the spent share of the budget (:func:`time_budget_progress`).
    """
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    return LambdaLR(optimizer, lambda _: warmup_cosine_factor(progress(), warmup_fraction, min_factor))


#: What a scheduler factory is called with, and when the scheduler steps (``model.scheduler_interval``):
#: ``step``: ``factory(optimizer, total_steps=<the fit's optimizer steps>)``, stepped every step;
#: ``time``: ``factory(optimizer, progress=<share of trainer.max_time spent>)``, every step;
#: ``epoch``: ``factory(optimizer)``, every epoch (torch's StepLR, CosineAnnealingLR, ...).
SCHEDULER_INTERVALS = ("step", "time", "epoch")


def scheduler_config(factory, optimizer, interval: str, trainer) -> dict:
    """Lightning's ``lr_scheduler`` entry for ``factory`` called as ``interval`` says."""
    if interval not in SCHEDULER_INTERVALS:
        raise ValueError(f"model.scheduler_interval must be one of {SCHEDULER_INTERVALS}, got "
                         f"{interval!r}")
    inputs = {"step": lambda: {"total_steps": int(trainer.estimated_stepping_batches)},
              "time": lambda: {"progress": time_budget_progress(trainer)},
              "epoch": dict}[interval]()
    try:
        scheduler = factory(optimizer, **inputs)
    except TypeError as error:
        raise TypeError(
            f"model.scheduler_interval={interval} calls the scheduler with the optimizer"
            f"{''.join(f' and {k}' for k in inputs)}, which it does not take ({error}): use "
            "step for schedules of total_steps (warmup_cosine), time for schedules of progress "
            "(warmup_cosine_time), epoch for torch schedulers stepped every epoch"
        ) from error
    return {"scheduler": scheduler, "interval": "epoch" if interval == "epoch" else "step"}


def time_budget_progress(trainer) -> Progress:
    """``() -> share of trainer.max_time spent in fit``, resume-safe (Lightning's Timer state).

    Raises a ValueError naming the fix when the trainer has no ``max_time``.
    """
    timer = _budget_timer(trainer)
    if timer is None:
        raise ValueError(
            "a time-budgeted schedule (model.scheduler_interval=time) needs a time budget: "
            "set trainer.max_time, e.g. trainer.max_time=00:00:45:00 (DD:HH:MM:SS)"
        )
    budget = timer.time_elapsed() + timer.time_remaining()
    if budget <= 0:
        raise ValueError(f"trainer.max_time must be positive, got {budget} s")
    return lambda: timer.time_elapsed() / budget


def fit_progress(trainer) -> Progress:
    """``() -> share of the fit done``: of ``trainer.max_time`` when the fit has a time budget
    (:func:`time_budget_progress`), else of its optimizer steps."""
    if _budget_timer(trainer) is not None:
        return time_budget_progress(trainer)
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total):
        raise ValueError("the fit's progress needs its length: set trainer.max_time, "
                         "trainer.max_steps or trainer.max_epochs")
    total = max(1, int(total))
    return lambda: min(1.0, trainer.global_step / total)


def _budget_timer(trainer) -> Timer | None:
    """The trainer's :class:`Timer` when it has a time budget (``trainer.max_time``), else None."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    return timer if timer is not None and timer.time_remaining() is not None else None

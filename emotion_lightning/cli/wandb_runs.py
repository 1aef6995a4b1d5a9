"""W&B runs: one per training run (recipe stage, sweep trial), named, announced, finished."""

from __future__ import annotations

import hashlib
from pathlib import Path

from omegaconf import DictConfig, open_dict

from emotion_lightning.cli.common import log


def identify_run(cfg: DictConfig, output_dir: Path) -> None:
    """Fill in ``logger.wandb``'s id and name where unset, both from the run dir: a resumed run
    (same dir) continues its W&B run, while each stage and sweep trial (own dir) gets its own,
    named ``<task>-<run dir name>`` (a time stamp, or the trial number in a sweep)."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is None:
        return
    with open_dict(cfg):
        if wandb_cfg.get("id") is None:
            digest = hashlib.sha1(str(output_dir.resolve()).encode()).hexdigest()[:12]
            wandb_cfg.id = f"{cfg.task_name}-{digest}"
        if wandb_cfg.get("name") is None:
            wandb_cfg.name = f"{cfg.task_name}-{output_dir.name}"


def _wandb_loggers(loggers: list) -> list:
    from lightning.pytorch.loggers import WandbLogger

    return [logger for logger in loggers if isinstance(logger, WandbLogger)]


def announce_runs(loggers: list) -> None:
    """Log the URL of each online W&B run (offline runs say where to sync them from)."""
    for logger in _wandb_loggers(loggers):
        run = logger.experiment
        if getattr(run, "url", None) and not getattr(logger, "_offline", False):
            log.info("W&B run %s: %s", run.name, run.url)
        else:
            log.info("W&B run %s is offline: wandb sync %s", getattr(run, "name", "?"),
                     getattr(run, "dir", logger.save_dir))


def finish_runs(loggers: list) -> None:
    """End the W&B runs these loggers started, so the next stage or trial in this process
    starts its own run instead of logging into this one."""
    for logger in _wandb_loggers(loggers):
        run = getattr(logger, "_experiment", None)
        if run is not None and hasattr(run, "finish"):
            run.finish()

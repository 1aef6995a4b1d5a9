"""Helpers shared by the Hydra entry points: instantiation, run files, metric extraction."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from emotion_lightning.runtime import (
    auto_num_workers,
    auto_precision,
    configure_threads,
    keep_freed_memory,
)

log = logging.getLogger("emotion_lightning")


def checkpoint_paths(value) -> str | list[str]:
    """``ckpt_path`` as the library takes it: one path, or a plain list of paths (an ensemble)."""
    return [str(p) for p in value] if OmegaConf.is_list(value) else str(value)


def instantiate_group(cfg: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a config group (callbacks, loggers)."""
    if not cfg:
        return []
    return [instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def processes_per_node(trainer_cfg: DictConfig) -> int:
    """How many training processes share this machine's cores (one per device under DDP)."""
    devices = trainer_cfg.get("devices", 1)
    if "ddp" in str(trainer_cfg.get("strategy", "")) and isinstance(devices, int) and devices > 0:
        return devices
    return 1


def setup_parallelism(cfg: DictConfig, data_cfg: DictConfig | None = None) -> None:
    """Size torch threads against the DataLoader workers (of ``data_cfg``, default
    ``cfg.data``) so the cores are not oversubscribed."""
    procs = processes_per_node(cfg.trainer)
    workers = (cfg.data if data_cfg is None else data_cfg).get("num_workers")
    workers = auto_num_workers(procs) if workers is None else workers
    threads = configure_threads(workers, procs)
    log.info("torch threads per process: %d, DataLoader workers: %d", threads, workers)


def setup_allocator(cfg: DictConfig) -> None:
    """``keep_freed_memory: true``: the C allocator keeps freed buffers for reuse instead of
    unmapping them (``runtime.keep_freed_memory``: faster CPU steps, the peak memory held)."""
    if not cfg.get("keep_freed_memory", False):
        return
    if keep_freed_memory():
        log.info("keep_freed_memory: freed buffers stay in the process for reuse")
    else:
        log.info("keep_freed_memory: not glibc here, the allocator is left as it is")


def resolve_precision(trainer_cfg: DictConfig) -> None:
    """Replace ``precision: auto`` in a trainer config by the fastest one here, and log it."""
    if str(trainer_cfg.get("precision")) != "auto":
        return
    precision, reason = auto_precision(str(trainer_cfg.get("accelerator", "auto")))
    with open_dict(trainer_cfg):
        trainer_cfg.precision = precision
    log.info("precision=auto -> %s (%s)", precision, reason)


@rank_zero_only
def save_run_config(cfg: DictConfig, output_dir: str | Path) -> None:
    """Write the fully resolved config next to Hydra's unresolved copy."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, Path(output_dir) / "config.yaml", resolve=True)
    if cfg.get("extras", {}).get("print_config"):
        log.info("config:\n%s", OmegaConf.to_yaml(cfg, resolve=True))


def scalar_metrics(metrics: dict) -> dict[str, float]:
    """Plain floats from Lightning's callback metrics."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


@rank_zero_only
def seed_everything(seed: int | None) -> None:
    if seed is not None:
        L.seed_everything(seed, workers=True)


def native_size(data_cfg: DictConfig) -> int | None:
    """The ``NATIVE_SIZE`` of the datamodule class ``data_cfg`` builds (``None``: images vary)."""
    target = data_cfg.get("_target_")
    return getattr(get_class(target), "NATIVE_SIZE", None) if target else None

"""Process-wide defaults: offline-safe environment and non-oversubscribing CPU parallelism."""

from __future__ import annotations

import os


def configure_environment() -> None:
    """Keep third-party libraries off the network unless the user asked otherwise."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks and cgroup-restricted sets)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def auto_num_workers(processes_per_node: int = 1) -> int:
    """DataLoader workers per process so that workers + torch threads fit the cores.

    With 2 cores or fewer per process, loading runs in the main process: a worker
    holding a core while torch uses the other makes torch ~10x slower.
    """
    per_process = available_cores() // max(1, processes_per_node)
    if per_process <= 2:
        return 0
    return min(8, per_process // 4 + 1)


def configure_threads(num_workers: int, processes_per_node: int = 1) -> int:
    """Give torch the cores that the DataLoader workers of this process leave free."""
    import torch  # only here: importing the package must stay light

    per_process = available_cores() // max(1, processes_per_node)
    threads = max(1, per_process - num_workers)
    torch.set_num_threads(threads)
    return threads

"""CPU parallelism defaults: DataLoader workers and torch threads share the cores."""

from __future__ import annotations

import pytest

from emotion_lightning import runtime


@pytest.mark.parametrize(
    ("cores", "processes", "workers", "threads"),
    [
        (2, 1, 0, 2),  # 2-core CPU: load in the main process, torch takes both cores
        (1, 1, 0, 1),
        (16, 1, 5, 11),
        (16, 2, 3, 5),
        (64, 1, 8, 56),
    ],
)
def test_workers_and_threads_fit_the_cores(monkeypatch, cores, processes, workers, threads):
    import torch

    monkeypatch.setattr(runtime, "available_cores", lambda: cores)
    before = torch.get_num_threads()
    try:
        assert runtime.auto_num_workers(processes) == workers
        assert runtime.configure_threads(workers, processes) == threads
    finally:
        torch.set_num_threads(before)

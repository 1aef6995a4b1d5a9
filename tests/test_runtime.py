"""CPU defaults: DataLoader workers and torch threads share the cores; freed memory is kept."""

from __future__ import annotations

import logging
import platform

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


# Reports glibc's view of a 64 MiB buffer (over the largest mmap threshold): the bytes served
# by mmap while it is held, and the free bytes left in the heap after it is freed.
ALLOCATION_PROBE = """
import ctypes, json, sys
from emotion_lightning.runtime import keep_freed_memory
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                "usmblks", "fsmblks", "uordblks", "fordblks",
                                                "keepcost")]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
before = libc.mallinfo2().hblkhd
buffer = libc.malloc(64 << 20)
mapped = libc.mallinfo2().hblkhd - before
libc.free(buffer)
print(json.dumps({"kept": kept, "mapped": mapped, "free_in_heap": libc.mallinfo2().fordblks}))
"""


def _probe(setting: str) -> dict:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", ALLOCATION_PROBE, setting], capture_output=True,
                          text=True, timeout=120, check=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator knobs are glibc's")
def test_keep_freed_memory_serves_large_buffers_from_the_heap_and_keeps_them():
    default, kept = _probe("default"), _probe("keep")
    assert default["mapped"] >= 64 << 20  # glibc's default: its own mapping...
    assert default["free_in_heap"] < 64 << 20  # ...returned to the kernel when freed
    assert kept["kept"] is True
    assert kept["mapped"] == 0
    assert kept["free_in_heap"] >= 64 << 20  # kept for the next step's buffers


def test_keep_freed_memory_changes_nothing_without_glibc(monkeypatch):
    import ctypes

    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: pytest.fail("no C library is touched"))
    assert runtime.keep_freed_memory() is False


@pytest.mark.parametrize(("setting", "available", "calls", "logged"), [
    (False, True, 0, ""),
    (True, True, 1, "freed buffers stay in the process"),
    (True, False, 1, "not glibc here, the allocator is left as it is"),
])
def test_entry_points_keep_freed_memory_as_configured(monkeypatch, caplog, setting, available,
                                                      calls, logged):
    from omegaconf import OmegaConf

    from emotion_lightning.cli import common

    made = []
    monkeypatch.setattr(common, "keep_freed_memory", lambda: made.append(1) or available)
    with caplog.at_level(logging.INFO, logger="emotion_lightning"):
        common.setup_allocator(OmegaConf.create({"keep_freed_memory": setting}))
    assert len(made) == calls
    assert logged in caplog.text


@pytest.mark.parametrize("config_name", ["train", "eval", "cross_eval", "detect"])
def test_entry_point_configs_keep_freed_memory_by_default(tmp_path, config_name):
    from tests.conftest import compose_cfg

    overrides = {"train": [], "detect": ["ckpt_path=x.ckpt", "input=x.jpg"]}.get(
        config_name, ["ckpt_path=x.ckpt"])
    assert compose_cfg(config_name, overrides, tmp_path).keep_freed_memory is True

"""Process-wide defaults: offline-safe environment and non-oversubscribing CPU parallelism."""

from __future__ import annotations

import os


def configure_environment() -> None:
    """The command line's environment defaults: albumentations stays off the network on import
    and W&B quiet. (W&B stays offline through the logger config's ``offline: true``, which
    ``logger.wandb.offline=false`` really turns off.) Importing the library sets nothing."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
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


#: ``mallopt`` parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make this process's C allocator keep freed memory for reuse; ``False`` where it cannot.

    glibc serves every allocation above its mmap threshold (activations, gradients) with a fresh
    ``mmap`` and unmaps it when freed, so each CPU training step faults in and zeroes its large
    buffers again (13% of a 2-core VGG fit's time went to the kernel). Served from the heap and
    never trimmed, the buffers are reused warm: 6-58% more images/s for training and 3-21% more
    frames/s for emotion-detect on 2 cores (``benchmarks/freed_memory.py``,
    ``benchmarks/detect.py``, README), and the process holds its peak memory. Forked
    DataLoader workers inherit the setting. Only glibc (Linux) has these knobs: elsewhere
    (macOS, Windows, musl) nothing changes and the result is ``False``.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    trim_never = 2**31 - 1  # 2 GiB, the most mallopt takes (an int): in practice never
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_never))


#: CPU flags whose presence makes bf16 matrix maths fast (AVX-512 BF16, AMX).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpuinfo_field(name: str) -> str:
    """The first ``name`` line of ``/proc/cpuinfo`` ("" where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_flags() -> set[str]:
    """The CPU's feature flags (empty where they cannot be read)."""
    return set(_cpuinfo_field("flags").split())


def cpu_name() -> str:
    """The CPU's model name, for recording beside every speed and accuracy figure."""
    import platform

    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def machine_record() -> dict:
    """The CPU facts every benchmark result records: model name, native bf16, usable cores."""
    return {"cpu": cpu_name(), "cpu_bf16": bool(cpu_flags().intersection(BF16_CPU_FLAGS)),
            "cpu_cores": available_cores()}


def auto_precision(accelerator: str = "auto") -> tuple[str, str]:
    """The fastest safe Lightning precision here, and why: ``(precision, reason)``.

    CUDA: ``bf16-mixed`` where supported, else ``16-mixed``. CPU: ``bf16-mixed`` only with
    native bf16 instructions (~2x faster than fp32 there, ~3x slower without them), else
    ``32-true``.
    """
    import torch

    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_cuda:
        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", "the GPU supports bf16"
        return "16-mixed", "the GPU has no bf16"
    found = sorted(cpu_flags().intersection(BF16_CPU_FLAGS))
    if found:
        return "bf16-mixed", f"the CPU ({cpu_name()}) has {', '.join(found)}"
    return "32-true", (f"the CPU ({cpu_name()}) has none of {', '.join(BF16_CPU_FLAGS)}: "
                       "bf16 would be slower")


def resolve_device(device: str):
    """A ``torch.device``; ``"auto"`` is the first GPU when there is one, else the CPU."""
    import torch

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} but no CUDA GPU is available; use device=cpu")
    return device

"""CPU training steps with glibc's default allocator against ``keep_freed_memory``.

Each ``arch@size`` runs the bare training step of ``benchmarks/toolbox.py`` (channels-last, the
precision ``precision=auto`` picks, SGD-Nesterov) in fresh child processes, alternately with the
allocator as glibc leaves it and with ``emotion_lightning.runtime.keep_freed_memory()`` (what
``keep_freed_memory: true``, the entry points' default, does), ``--rounds`` times each, so a
host whose speed drifts weighs on both alike. Reports per setting the median images/s, the
kernel (system) seconds per step and the peak resident memory, and the speed-up of keeping
freed memory. Prints and saves JSON.

    python benchmarks/freed_memory.py --archs vgg_fer@48 resnet18@96 --rounds 3 --steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toolbox import train_step_seconds  # noqa: E402

from emotion_lightning.records import write_json  # noqa: E402
from emotion_lightning.runtime import (  # noqa: E402
    auto_precision,
    configure_threads,
    keep_freed_memory,
    machine_record,
)


def child(spec: str, keep: bool, batch: int, steps: int, warmup: int) -> dict:
    """One measurement in this process: images/s, kernel seconds per step, peak memory."""
    if keep and not keep_freed_memory():
        raise SystemExit("keep_freed_memory() is not available here (it needs glibc)")
    configure_threads(0)
    arch, _, size = spec.partition("@")
    bf16 = auto_precision("cpu")[0] == "bf16-mixed"
    before = os.times()
    seconds = train_step_seconds(arch, int(size), batch, bf16, steps, warmup)
    after = os.times()
    return {"img_per_s": batch / seconds,
            "system_s_per_step": (after.system - before.system) / (steps + warmup),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(spec: str, keep: bool, args) -> dict:
    """``child`` in a fresh interpreter, so that each setting starts from a clean allocator."""
    command = [sys.executable, __file__, "--child", spec, "--batch-size", str(args.batch_size),
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if keep:
        command.append("--keep")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{spec} ({'kept' if keep else 'default'}) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(runs: list[dict]) -> dict:
    return {"img_per_s_median": round(statistics.median(r["img_per_s"] for r in runs), 1),
            "img_per_s": [round(r["img_per_s"], 1) for r in runs],
            "system_s_per_step": round(statistics.median(r["system_s_per_step"] for r in runs), 3),
            "max_rss_mb": round(max(r["max_rss_mb"] for r in runs))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["vgg_fer@48", "resnet18@96"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two settings")
    parser.add_argument("--out", default="benchmarks/results/freed_memory.json")
    parser.add_argument("--child", metavar="ARCH@SIZE", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.keep, args.batch_size, args.steps, args.warmup)))
        return
    result = {"machine": machine_record(), "precision": auto_precision("cpu")[0],
              "torch": torch.__version__, "batch_size": args.batch_size, "steps": args.steps,
              "rounds": args.rounds, "archs": {}}
    for spec in args.archs:
        runs: dict[str, list[dict]] = {"default": [], "kept": []}
        for _ in range(args.rounds):
            runs["default"].append(measure(spec, False, args))
            runs["kept"].append(measure(spec, True, args))
        row = {name: summary(r) for name, r in runs.items()}
        row["speedup"] = round(row["kept"]["img_per_s_median"]
                               / row["default"]["img_per_s_median"], 3)
        result["archs"][spec] = row
        print(spec, json.dumps(row), flush=True)
    print(json.dumps(result, indent=2))
    write_json(result, Path(args.out))


if __name__ == "__main__":
    main()

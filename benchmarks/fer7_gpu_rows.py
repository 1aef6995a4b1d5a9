"""Issue 20's seven-class GPU rows: several ``fer7_gpu_fast`` fits at once on one GPU (one
augmentation variant each), then the ensemble of their best checkpoints.

One ResNet-18 fit at batch 512 leaves most of an H100/H200 idle (the host's per-step work
binds it), so three fits side by side each train at nearly the speed of one alone: three
variants, and their ensemble, for the wall time of one fit. Each fit runs ``emotion-train`` in
its own process, pinned to its share of the CPU cores, into ``OUT/<variant>``; the ensemble is
``emotion-eval`` on the test split with the prior correction chosen on validation
(``OUT/ensemble``). Prints and saves JSON (the fits' and the ensemble's scores, the wall
times).

    python benchmarks/fer7_gpu_rows.py --data-root /data/fer2013 --out runs/fer7_gpu
    python benchmarks/fer7_gpu_rows.py --data-root /data/fer2013 --out runs/x --fit 00:00:10:00 \\
        --variants erase=data.augmentation.erasing_p=0.5 mix="model.mixup_alpha=0.2 model.mix_p=0.5"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from emotion_lightning.records import write_json

#: name -> overrides on top of fer7_gpu_fast (its own augmentation has random erasing)
VARIANTS = {
    "erase": "",
    "plain": "data.augmentation.erasing_p=0",
    "mix": "model.mixup_alpha=0.2 model.cutmix_alpha=1.0 model.mix_p=0.5",
}
SCORES = ("test/acc", "test/balanced_acc", "test/macro_f1", "test/recall/disgust", "val/acc_best",
          "prior/tau", "train/seconds", "train/img_per_s", "precision", "best_ckpt")


def core_shares(count: int) -> list[set[int] | None]:
    """This process's cores split into ``count`` disjoint sets (None each where too few)."""
    cores = sorted(os.sched_getaffinity(0))
    per = len(cores) // count
    if per < 2:
        return [None] * count
    return [set(cores[i * per:(i + 1) * per]) for i in range(count)]


def launch(command: list[str], log: Path, cores: set[int] | None) -> subprocess.Popen:
    """Start ``command`` with its output to ``log``, on ``cores`` when given."""
    def pin() -> None:
        if cores:
            os.sched_setaffinity(0, cores)

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        return subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, preexec_fn=pin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True, help="FER2013 (CSV or folder layout)")
    parser.add_argument("--out", required=True, help="run directories go here (must not exist)")
    parser.add_argument("--fit", default="00:00:05:00", help="each fit's trainer.max_time")
    parser.add_argument("--variants", nargs="*", default=None,
                        help="NAME=OVERRIDES (space-separated Hydra overrides); default: "
                        + ", ".join(f"{k}: '{v}'" for k, v in VARIANTS.items()))
    parser.add_argument("--accelerator", default="gpu", help="gpu, or cpu for a dry run")
    parser.add_argument("--extra", default="", help="overrides for every fit (a dry run's sizes)")
    parser.add_argument("--results", default=str(Path(__file__).parent / "results" / "fer7_gpu_rows.json"))
    args = parser.parse_args()

    variants = dict(VARIANTS) if args.variants is None else dict(
        v.split("=", 1) if "=" in v else (v, "") for v in args.variants)
    out = Path(args.out)
    if out.exists():
        sys.exit(f"--out {out} exists: choose a new directory (runs are never overwritten)")
    trainer = ["trainer=gpu"] if args.accelerator == "gpu" else ["trainer.accelerator=cpu"]
    start = time.perf_counter()
    procs = {}
    for (name, overrides), cores in zip(variants.items(), core_shares(len(variants))):
        command = [sys.executable, "-m", "emotion_lightning.cli.train", "experiment=fer7_gpu_fast",
                   f"data.root={args.data_root}", *trainer, f"trainer.max_time={args.fit}",
                   "logger=csv", "extras.print_config=false", f"hydra.run.dir={out / name}",
                   *shlex.split(args.extra), *shlex.split(overrides)]
        procs[name] = launch(command, out / "logs" / f"fit_{name}.log", cores)
        print(f"{name}: {shlex.join(command[1:])}", flush=True)
    fits = {}
    for name, proc in procs.items():
        code = proc.wait()
        metrics = out / name / "metrics.json"
        scores = json.loads(metrics.read_text()) if metrics.is_file() else {}
        fits[name] = {"exit_code": code, "overrides": variants[name],
                      **{k: scores[k] for k in SCORES if k in scores}}
        print(name, json.dumps(fits[name]), flush=True)
    fits_seconds = time.perf_counter() - start

    ckpts = [fit["best_ckpt"] for fit in fits.values() if fit.get("best_ckpt")]
    ensemble = {}
    if len(ckpts) > 1:
        command = [sys.executable, "-m", "emotion_lightning.cli.eval", f"ckpt_path=[{','.join(ckpts)}]",
                   "data=fer", f"data.root={args.data_root}", *trainer, "trainer.precision=auto",
                   "prior_tau=auto", f"hydra.run.dir={out / 'ensemble'}"]
        code = launch(command, out / "logs" / "ensemble.log", None).wait()
        metrics = out / "ensemble" / "metrics.json"
        scores = json.loads(metrics.read_text()) if metrics.is_file() else {}
        ensemble = {"exit_code": code, "members": list(fits),
                    **{k: scores[k] for k in ("acc", "balanced_acc", "macro_f1", "prior_tau")
                       if k in scores}}
        if "per_class" in scores:
            ensemble["recall/disgust"] = scores["per_class"].get("disgust", {}).get("recall")
        if "prior_search" in scores:
            chosen = [r for r in scores["prior_search"]["rows"]
                      if abs(r["tau"] - scores["prior_tau"]) < 1e-6]
            ensemble["val_acc"] = chosen[0]["acc"] if chosen else None
        print("ensemble", json.dumps(ensemble), flush=True)

    result = {"fit_budget": args.fit, "accelerator": args.accelerator, "out": str(out),
              "fits_wall_seconds": round(fits_seconds, 1),
              "wall_seconds": round(time.perf_counter() - start, 1), "fits": fits,
              "ensemble": ensemble}
    print(json.dumps(result, indent=2))
    write_json(result, args.results)
    if any(fit["exit_code"] for fit in fits.values()) or ensemble.get("exit_code"):
        sys.exit(1)


if __name__ == "__main__":
    main()

"""Training throughput of each recipe's exact settings: Lightning vs a bare PyTorch loop.

For every recipe (Hydra experiment) the model, optimizer, batch size, input size, augmentation,
memory format and precision (``auto`` resolved as ``emotion-train`` does) come from the
composed config. The bare loop runs the same network and optimizer in fp32 and in bf16
autocast, which shows whether ``precision=auto`` picked the faster one on this CPU. Also the
data pipeline alone (decoded cache vs a JPEG decoded per sample). Prints and saves JSON.

    python benchmarks/train_throughput.py --recipes fer5_cpu fer7_cpu quickstart --steps 12
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.common import write_json
from emotion_lightning.data.base import ArrayDataset
from emotion_lightning.data.presets import GrayPreset
from emotion_lightning.runtime import (
    BF16_CPU_FLAGS,
    auto_num_workers,
    auto_precision,
    configure_threads,
    cpu_flags,
    cpu_name,
)


class JpegDataset(Dataset):
    """The uncached path: decode a JPEG file for every sample."""

    def __init__(self, files: list[Path], labels: np.ndarray, transform) -> None:
        self.files, self.labels, self.transform = files, labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return self.transform(cv2.imread(str(self.files[i]), cv2.IMREAD_GRAYSCALE)), int(self.labels[i])


class StepTimer(L.Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last batch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


def loader(dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                      drop_last=True, persistent_workers=workers > 0)


def recipe_config(name: str, accelerator: str):
    """The composed experiment, with ``precision=auto`` resolved."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}", f"trainer.accelerator={accelerator}"])
    precision = str(cfg.trainer.precision)
    if precision == "auto":
        precision = auto_precision(accelerator)[0]
    return cfg, precision


def build_model(cfg) -> L.LightningModule:
    torch.manual_seed(0)
    return instantiate(cfg.model)


def lightning_rate(cfg, precision: str, dataset, args, workers: int) -> float:
    model = build_model(cfg)
    model.scheduler_factory = None  # no schedule (nor time budget) in a throughput measurement
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(max_steps=args.warmup + args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                        limit_val_batches=0, num_sanity_val_steps=0, accelerator=args.accelerator,
                        devices=1, precision=precision)
    trainer.fit(model, loader(dataset, cfg.data.batch_size, workers))
    return args.steps * cfg.data.batch_size / (timer.end - timer.start)


def plain_rate(cfg, bf16: bool, dataset, args, workers: int) -> float:
    """The same network and optimizer in a bare loop (autocast when ``bf16``)."""
    model = build_model(cfg)
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    model = model.to(device).train()
    optimizer = model.optimizer_factory(model._parameter_groups())
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    step, start = 0, None
    while step < args.warmup + args.steps:
        for x, y in loader(dataset, cfg.data.batch_size, workers):
            if step == args.warmup:
                start = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast:
                loss = F.cross_entropy(model(x), y, label_smoothing=cfg.model.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == args.warmup + args.steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * cfg.data.batch_size / (time.perf_counter() - start)


def pipeline_rate(dataset, batch_size: int, workers: int, batches: int) -> float:
    it, start, seen = iter(loader(dataset, batch_size, workers)), time.perf_counter(), 0
    for _ in range(batches):
        x, _ = next(it)
        seen += len(x)
    return seen / (time.perf_counter() - start)


def measure_recipe(name: str, images, labels, args, workers: int) -> dict:
    cfg, precision = recipe_config(name, args.accelerator)
    size = int(cfg.data.image_size)
    preset = GrayPreset(size, train=True, **(cfg.data.get("augmentation") or {}))
    dataset = ArrayDataset(images, labels % len(cfg.data.classes), preset)
    lit = lightning_rate(cfg, precision, dataset, args, workers)
    plain = {p: plain_rate(cfg, p == "bf16", dataset, args, workers) for p in ("fp32", "bf16")}
    fastest = max(plain, key=plain.get)
    chosen = "bf16" if precision.startswith("bf16") else "fp32"
    return {
        "arch": cfg.model.arch, "image_size": size, "batch_size": int(cfg.data.batch_size),
        "channels_last": bool(cfg.model.channels_last), "precision": precision,
        "lightning_images_per_s": round(lit, 1),
        "plain_loop_images_per_s": round(plain[chosen], 1),
        "lightning_over_plain": round(lit / plain[chosen], 3),
        "plain_fp32_images_per_s": round(plain["fp32"], 1),
        "plain_bf16_images_per_s": round(plain["bf16"], 1),
        "auto_picked_fastest": chosen == fastest,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["fer5_cpu", "fer7_cpu", "quickstart"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--accelerator", default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = parser.parse_args()

    workers = auto_num_workers()
    threads = configure_threads(workers)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 48, 48), dtype=np.uint8)  # FER-shaped
    labels = rng.integers(0, 7, args.images)

    preset = GrayPreset(48, train=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, image in enumerate(images):
            files.append(Path(tmp) / f"{i}.jpg")
            cv2.imwrite(str(files[-1]), image)
        batches = max(10, args.images // 64 // 2)
        pipe_cached = pipeline_rate(ArrayDataset(images, labels, preset), 64, workers, batches)
        pipe_jpeg = pipeline_rate(JpegDataset(files, labels, preset), 64, workers, batches)

    recipes = {}
    for name in args.recipes:
        recipes[name] = measure_recipe(name, images, labels, args, workers)
        print(name, json.dumps(recipes[name]), flush=True)
    flags = cpu_flags()
    result = {
        "device": torch.cuda.get_device_name() if args.accelerator == "gpu" else "cpu",
        "cpu": cpu_name(),
        "cpu_bf16_flags": sorted(flags.intersection(BF16_CPU_FLAGS)),
        "torch_threads": threads,
        "dataloader_workers": workers,
        "steps": args.steps,
        "recipes": recipes,
        "pipeline_cached_images_per_s_48px": round(pipe_cached, 1),
        "pipeline_jpeg_images_per_s_48px": round(pipe_jpeg, 1),
        "goals": {"lightning_over_plain": ">= 0.95", "auto_picked_fastest": True},
    }
    print(json.dumps(result, indent=2))
    write_json(result, args.out)


if __name__ == "__main__":
    main()

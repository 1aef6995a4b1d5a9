"""Training throughput of each recipe's exact settings: Lightning vs a bare PyTorch loop, and
the two data loaders against the model alone.

For every recipe (Hydra experiment) the model, optimizer, batch size, input size, augmentation,
memory format and precision (``auto`` resolved as ``emotion-train`` does) come from the
composed config. The bare loop runs the same network and optimizer in fp32 and in bf16
autocast, which shows whether ``precision=auto`` picked the faster one on this CPU. Also the
data pipeline alone (decoded cache vs a JPEG decoded per sample).

``--loaders`` (ResNet-18 at 96 px and ResNet-50 at 112 px with ``fer5_cpu``'s batch, optimizer,
augmentation and precision): Lightning's training images/s through the datamodule with
``data.loader=workers`` (the DataLoader path) and ``data.loader=device`` (the device-resident
loader), and the ceiling: the model alone, a bare loop on one fixed batch already on the device;
each as a fraction of the ceiling. On CUDA when there is a GPU. Prints and saves JSON.

    python benchmarks/train_throughput.py --recipes fer5_cpu fer7_cpu quickstart --steps 12
    python benchmarks/train_throughput.py --recipes --loaders resnet18@96 resnet50@112 --steps 6
    python benchmarks/train_throughput.py --recipes --loaders resnet18@96 --batch-size 512
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
from emotion_lightning.data.base import ArrayDataset, GrayImageDataModule
from emotion_lightning.data.presets import GrayPreset
from emotion_lightning.records import write_json
from emotion_lightning.runtime import (
    BF16_CPU_FLAGS,
    auto_num_workers,
    auto_precision,
    configure_threads,
    cpu_flags,
    machine_record,
)


class JpegDataset(Dataset):
    """The uncached path: decode a JPEG file for every sample."""

    def __init__(self, files: list[Path], labels: np.ndarray, transform) -> None:
        self.files, self.labels, self.transform = files, labels, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        return self.transform(cv2.imread(str(self.files[i]), cv2.IMREAD_GRAYSCALE)), int(self.labels[i])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer(L.Callback):
    """Wall time from the start of batch ``warmup`` to the end of the last batch (the GPU's
    queue drained at both ends)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup and self.start is None:
            synchronize(module.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == trainer.max_steps:
            synchronize(module.device)
        self.end = time.perf_counter()


class ArrayDataModule(GrayImageDataModule):
    """FER-shaped uint8 arrays as a datamodule (train; a few of them as val, never run)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes, **loader) -> None:
        super().__init__(classes, **loader)
        self.images, self.labels = images, labels

    def load_splits(self, stage):
        return {"train": (self.images, self.labels), "val": (self.images[:64], self.labels[:64])}


def check_images(images: int, batch_size: int) -> None:
    """Stop with what to pass when ``--images`` cannot fill one batch (drop_last would give none)."""
    if images < batch_size:
        raise SystemExit(f"--images {images} is less than one batch of {batch_size}: "
                         f"pass --images {batch_size} or more")


def loader(dataset, batch_size: int, workers: int) -> DataLoader:
    check_images(len(dataset), batch_size)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                      drop_last=True, persistent_workers=workers > 0)


def recipe_config(name: str, accelerator: str, overrides: tuple[str, ...] | list[str] = ()):
    """The composed experiment, with ``precision=auto`` resolved."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={name}", f"trainer.accelerator={accelerator}",
                                          *overrides])
    precision = str(cfg.trainer.precision)
    if precision == "auto":
        precision = auto_precision(accelerator)[0]
    return cfg, precision


def build_model(cfg) -> L.LightningModule:
    torch.manual_seed(0)
    return instantiate(cfg.model)


def lightning_rate(cfg, precision: str, data, args) -> float:
    """Lightning's training images/s on ``data`` (a DataLoader or a datamodule)."""
    model = build_model(cfg)
    model.scheduler_factory = None  # no schedule (nor time budget) in a throughput measurement
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(max_steps=args.warmup + args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                        limit_val_batches=0, num_sanity_val_steps=0, accelerator=args.accelerator,
                        devices=1, precision=precision)
    if isinstance(data, L.LightningDataModule):
        trainer.fit(model, datamodule=data)
    else:
        trainer.fit(model, data)
    return args.steps * cfg.data.batch_size / (timer.end - timer.start)


def ceiling_rate(cfg, precision: str, args) -> float:
    """The model alone: forward, backward and optimizer step on one fixed batch on the device."""
    model = build_model(cfg)
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    model = model.to(device).train()
    optimizer = model.optimizer_factory(model._parameter_groups())
    size, batch = int(cfg.data.image_size), int(cfg.data.batch_size)
    x = torch.randn(batch, 1, size, size, device=device)
    y = torch.randint(0, len(cfg.data.classes), (batch,), device=device)
    dtype = torch.bfloat16 if precision.startswith("bf16") else (
        torch.float16 if precision.startswith("16") else None)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()
    start = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            synchronize(device)
            start = time.perf_counter()
        with autocast:
            loss = F.cross_entropy(model(x), y, label_smoothing=cfg.model.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return args.steps * batch / (time.perf_counter() - start)


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
    """Images/s of the input pipeline alone over ``batches`` batches (epochs repeat as needed)."""
    data = loader(dataset, batch_size, workers)
    it, start, seen = iter(data), time.perf_counter(), 0
    for _ in range(batches):
        x = next(it, None)
        if x is None:
            it = iter(data)
            x = next(it)
        seen += len(x[0])
    return seen / (time.perf_counter() - start)


def measure_recipe(name: str, images, labels, args, workers: int) -> dict:
    cfg, precision = recipe_config(name, args.accelerator)
    size = int(cfg.data.image_size)
    preset = GrayPreset(size, train=True, **(cfg.data.get("augmentation") or {}))
    dataset = ArrayDataset(images, labels % len(cfg.data.classes), preset)
    lit = lightning_rate(cfg, precision, loader(dataset, cfg.data.batch_size, workers), args)
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


def measure_loaders(setting: str, images, labels, args) -> dict:
    """``arch@size`` with fer5_cpu's data settings: DataLoader path, device path, ceiling."""
    arch, size = setting.split("@")
    overrides = [f"model.arch={arch}", f"data.image_size={size}"]
    if args.batch_size:
        overrides.append(f"data.batch_size={args.batch_size}")
    cfg, precision = recipe_config("fer5_cpu", args.accelerator, overrides)
    check_images(len(images), int(cfg.data.batch_size))
    classes = list(cfg.data.classes)
    rates = {"workers": 0.0, "device": 0.0, "ceiling": 0.0}
    for _ in range(args.repeats):  # interleaved, the best of each: robust to a busy machine
        for path in ("workers", "device"):
            data = ArrayDataModule(images, labels % len(classes), classes, image_size=int(size),
                                   batch_size=int(cfg.data.batch_size), num_workers=None,
                                   augmentation=dict(cfg.data.augmentation), loader=path)
            rates[path] = max(rates[path], lightning_rate(cfg, precision, data, args))
        rates["ceiling"] = max(rates["ceiling"], ceiling_rate(cfg, precision, args))
    ceiling = rates["ceiling"]
    return {
        "arch": arch, "image_size": int(size), "batch_size": int(cfg.data.batch_size),
        "precision": precision, "repeats": args.repeats,
        "dataloader_images_per_s": round(rates["workers"], 1),
        "device_loader_images_per_s": round(rates["device"], 1),
        "ceiling_images_per_s": round(ceiling, 1),
        "dataloader_of_ceiling": round(rates["workers"] / ceiling, 3),
        "device_loader_of_ceiling": round(rates["device"] / ceiling, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", default=["fer5_cpu", "fer7_cpu", "quickstart"])
    parser.add_argument("--loaders", nargs="*", default=["resnet18@96", "resnet50@112"],
                        help="ARCH@SIZE settings timed with each loader and alone (none: skip)")
    parser.add_argument("--repeats", type=int, default=2, help="--loaders: best of this many")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="--loaders: this batch instead of fer5_cpu's (the GPU recipes' 512)")
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
    loaders = {}
    for setting in args.loaders:
        loaders[setting] = measure_loaders(setting, images, labels, args)
        print(setting, json.dumps(loaders[setting]), flush=True)
    flags = cpu_flags()
    result = {
        "device": torch.cuda.get_device_name() if args.accelerator == "gpu" else "cpu",
        **machine_record(),
        "cpu_bf16_flags": sorted(flags.intersection(BF16_CPU_FLAGS)),
        "torch_threads": threads,
        "dataloader_workers": workers,
        "steps": args.steps,
        "recipes": recipes,
        "loaders": loaders,
        "pipeline_cached_images_per_s_48px": round(pipe_cached, 1),
        "pipeline_jpeg_images_per_s_48px": round(pipe_jpeg, 1),
        "goals": {"lightning_over_plain": ">= 0.95", "auto_picked_fastest": True,
                  "device_loader_of_ceiling": ">= 0.85",
                  "device_loader_images_per_s resnet18@96": ">= 20000 on an H100/H200"},
    }
    print(json.dumps(result, indent=2))
    write_json(result, args.out)


if __name__ == "__main__":
    main()

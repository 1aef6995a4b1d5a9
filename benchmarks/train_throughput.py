"""Training throughput: Lightning (EmotionClassifier + Trainer) vs a plain PyTorch loop.

Same model, batch size, optimiser, data and transforms; also the data pipeline alone, from
the decoded uint8 cache and from JPEG files decoded per sample. Prints and saves JSON.

    python benchmarks/train_throughput.py --arch resnet18 --image-size 48 --steps 30
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from emotion_lightning.data.base import ArrayDataset
from emotion_lightning.data.presets import GrayPreset
from emotion_lightning.models import EmotionClassifier
from emotion_lightning.runtime import auto_num_workers, configure_threads


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


def lightning_rate(args, dataset, workers: int) -> float:
    torch.manual_seed(0)
    model = EmotionClassifier(["a", "b", "c", "d", "e"], arch=args.arch, image_size=args.image_size,
                              optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3))
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(max_steps=args.warmup + args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                        limit_val_batches=0, num_sanity_val_steps=0, accelerator=args.accelerator,
                        devices=1)
    trainer.fit(model, loader(dataset, args.batch_size, workers))
    return args.steps * args.batch_size / (timer.end - timer.start)


def plain_rate(args, dataset, workers: int) -> float:
    torch.manual_seed(0)
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    net = EmotionClassifier(["a", "b", "c", "d", "e"], arch=args.arch).net.to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    step, start = 0, None
    while step < args.warmup + args.steps:
        for x, y in loader(dataset, args.batch_size, workers):
            if step == args.warmup:
                start = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == args.warmup + args.steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch_size / (time.perf_counter() - start)


def pipeline_rate(dataset, batch_size: int, workers: int, batches: int) -> float:
    it, start, seen = iter(loader(dataset, batch_size, workers)), time.perf_counter(), 0
    for _ in range(batches):
        x, _ = next(it)
        seen += len(x)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--accelerator", default="gpu" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = parser.parse_args()

    workers = auto_num_workers()
    threads = configure_threads(workers)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.images, 48, 48), dtype=np.uint8)  # FER-shaped
    labels = rng.integers(0, 5, args.images)
    preset = GrayPreset(args.image_size, train=True)
    cached = ArrayDataset(images, labels, preset)

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, image in enumerate(images):
            files.append(Path(tmp) / f"{i}.jpg")
            cv2.imwrite(str(files[-1]), image)
        uncached = JpegDataset(files, labels, preset)
        batches = max(10, args.images // args.batch_size // 2)
        pipe_cached = pipeline_rate(cached, args.batch_size, workers, batches)
        pipe_uncached = pipeline_rate(uncached, args.batch_size, workers, batches)

    lit = lightning_rate(args, cached, workers)
    plain = plain_rate(args, cached, workers)
    result = {
        "device": torch.cuda.get_device_name() if args.accelerator == "gpu" else "cpu",
        "torch_threads": threads,
        "dataloader_workers": workers,
        "arch": args.arch,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "lightning_images_per_s": round(lit, 1),
        "plain_loop_images_per_s": round(plain, 1),
        "lightning_over_plain": round(lit / plain, 3),
        "pipeline_cached_images_per_s": round(pipe_cached, 1),
        "pipeline_jpeg_images_per_s": round(pipe_uncached, 1),
        "pipeline_over_training": round(pipe_cached / plain, 2),
        "goals": {"lightning_over_plain": ">= 0.95", "pipeline_over_training": ">= 5"},
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

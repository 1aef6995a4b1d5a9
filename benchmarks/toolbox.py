"""Per-step cost of the training toolbox on this machine: backbones and each ingredient.

Backbones: a bare training step (forward, cross-entropy, backward, SGD-Nesterov) of each
``arch@size`` at ``--batch-size``, channels-last, in the precision ``precision=auto`` picks,
as images/s. Ingredients, timed on the ResNet-18 at 96 px unless named: mixup/cutmix of the
batch, the EMA update of the weights, random erasing in the data preset (per image), and the
test-time views (10 shifts vs ten 40-px crops at 48 px, per image). ``--compile`` adds the
same training step with the backbone through ``torch.compile`` (``model.compile=true``): its
images/s after compiling, and the seconds the first compiled step took. Prints and saves JSON.

    python benchmarks/toolbox.py --archs resnet18@96 resnet18_cifar@48 vgg_fer@48 --steps 5
    python benchmarks/toolbox.py --archs resnet18@96 --compile --steps 10
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emotion_lightning.callbacks.ema import WarmupEMA
from emotion_lightning.data.presets import GrayPreset
from emotion_lightning.models import create_backbone
from emotion_lightning.models.mixing import BatchMixer
from emotion_lightning.models.test_time import average_probabilities
from emotion_lightning.records import write_json
from emotion_lightning.runtime import auto_precision, configure_threads, machine_record


def _timed(fn, steps: int, warmup: int) -> float:
    """Mean seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def train_step_seconds(arch: str, size: int, batch: int, bf16: bool, steps: int,
                       warmup: int, compiled: bool = False) -> float:
    net = create_backbone(arch, 7).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    forward = torch.compile(net) if compiled else net
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch,))

    def step():
        with _autocast(bf16):
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _timed(step, steps, warmup)


def ingredient_seconds(batch: int, bf16: bool, steps: int) -> dict[str, float]:
    x, y = torch.randn(batch, 1, 96, 96), torch.randint(0, 7, (batch,))
    mixer = BatchMixer(7, mixup_alpha=0.2, cutmix_alpha=1.0)
    net = create_backbone("resnet18", 7)
    average = [t.detach().clone() for t in net.state_dict().values() if t.is_floating_point()]
    current = [t for t in net.state_dict().values() if t.is_floating_point()]
    ema = WarmupEMA(0.999)
    face = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    plain = GrayPreset(96, train=True, pad_crop=8, affine_p=0.0)
    erasing = GrayPreset(96, train=True, pad_crop=8, affine_p=0.0, erasing_p=0.5)
    small = create_backbone("resnet18_cifar", 7).eval()
    x48 = torch.randn(64, 1, 48, 48)

    def tta(**views):
        with torch.no_grad(), _autocast(bf16):
            average_probabilities(small, x48, flip=True, **views)

    return {
        "mix_batch_ms": 1e3 * _timed(lambda: mixer(x, y), steps * 10, 2),
        "ema_update_resnet18_ms": 1e3 * _timed(
            lambda: ema(average, current, torch.tensor(10_000)), steps * 10, 2),
        "preset_pad_crop_flip_us_per_image": 1e6 * _timed(lambda: plain(face), 500, 20),
        "preset_plus_erasing_us_per_image": 1e6 * _timed(lambda: erasing(face), 500, 20),
        "tta_10_shifts_resnet18_cifar_ms_per_image": 1e3 * _timed(
            lambda: tta(shift=2), 2, 1) / 64,
        "tta_ten_crop_40_resnet18_cifar_ms_per_image": 1e3 * _timed(
            lambda: tta(crop=40), 2, 1) / 64,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["resnet18@96", "resnet18_cifar@48",
                                                        "vgg_fer@48", "vgg_fer@40"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true",
                        help="also time each backbone through torch.compile")
    parser.add_argument("--out", default="benchmarks/results/toolbox.json")
    args = parser.parse_args()
    threads = configure_threads(0)
    precision = auto_precision("cpu")[0]
    bf16 = precision == "bf16-mixed"
    result = {"machine": machine_record(), "torch_threads": threads, "precision": precision,
              "batch_size": args.batch_size, "steps": args.steps, "backbones": {}}
    for spec in args.archs:
        arch, _, size = spec.partition("@")
        seconds = train_step_seconds(arch, int(size), args.batch_size, bf16, args.steps,
                                     args.warmup)
        params = sum(p.numel() for p in create_backbone(arch, 7).parameters())
        result["backbones"][spec] = {"train_img_per_s": round(args.batch_size / seconds, 1),
                                     "step_s": round(seconds, 3), "params_m": round(params / 1e6, 2)}
        if args.compile:
            start = time.perf_counter()
            first = train_step_seconds(arch, int(size), args.batch_size, bf16, 1, 0, compiled=True)
            compiled = train_step_seconds(arch, int(size), args.batch_size, bf16, args.steps,
                                          args.warmup, compiled=True)
            result["backbones"][spec] |= {
                "compiled_train_img_per_s": round(args.batch_size / compiled, 1),
                "compiled_speedup": round(seconds / compiled, 3),
                "first_compiled_step_s": round(first, 1),
                "compile_total_s": round(time.perf_counter() - start, 1)}
        print(spec, result["backbones"][spec], flush=True)
    result["ingredients"] = {k: round(v, 3) for k, v in
                             ingredient_seconds(args.batch_size, bf16, args.steps).items()}
    print(json.dumps(result, indent=2))
    write_json(result, Path(args.out))


if __name__ == "__main__":
    main()

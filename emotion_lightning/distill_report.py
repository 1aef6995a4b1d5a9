"""What conv1 distillation buys: teacher–student agreement and cosine for three conv1s.

On a folder of colour images, compares the RGB teacher on the colour images with the gray
student on their luma for ``random`` (before distillation), ``distilled`` (a Conv1Distiller
checkpoint, when given) and ``rgb_sum`` (the analytic baseline). ``emotion-distill-report``
runs it from ``conf/distill_report.yaml``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from emotion_lightning.data.gray_distill import PairedImageDataset, PairedViews, find_rgb_images
from emotion_lightning.models.gray_distill import Conv1Distiller
from emotion_lightning.models.gray_resnet import gray_conv1_from_rgb
from emotion_lightning.models.weights import load_checkpoint_file
from emotion_lightning.runtime import auto_num_workers

log = logging.getLogger(__name__)
METRICS = ("agreement", "cosine", "loss")


def load_distiller(checkpoint: str | Path) -> tuple[Conv1Distiller, dict]:
    """A Conv1Distiller (teacher and trained student) from its checkpoint, and its hyper-parameters.

    The teacher comes from the checkpoint, so no ImageNet weights are fetched.
    """
    blob = load_checkpoint_file(checkpoint)
    hparams = dict(blob.get("hyper_parameters", {}))
    if "target" not in hparams or "teacher.conv1.weight" not in blob.get("state_dict", {}):
        raise ValueError(f"{checkpoint} is not a Conv1Distiller checkpoint "
                         "(emotion-train experiment=gray_distill writes one)")
    model = Conv1Distiller(arch=hparams["arch"], teacher_weights=None, target=hparams["target"])
    model.load_state_dict(blob["state_dict"])
    return model, hparams


def distill_report(
    images: str | Path,
    checkpoint: str | Path | None = None,
    arch: str = "resnet50",
    teacher_weights: str | None = "imagenet",
    target: str = "logits",
    image_size: int = 224,
    batch_size: int = 32,
    num_workers: int | None = None,
    limit: int | None = None,
    seed: int = 42,
    accelerator: str = "auto",
) -> dict:
    """Teacher–student agreement, cosine and loss per conv1 variant on the images under ``images``.

    With ``checkpoint``, its arch, target and teacher are used (``arch``, ``teacher_weights``
    and ``target`` are ignored) and its student is the ``distilled`` row.
    """
    if checkpoint:
        model, hparams = load_distiller(checkpoint)
    else:
        model = Conv1Distiller(arch, teacher_weights, target=target)
        hparams = dict(model.hparams)
    paths, _, _ = find_rgb_images(images)
    if limit is not None and limit < len(paths):
        order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))
        paths = [paths[i] for i in sorted(order[:limit].tolist())]
    workers = auto_num_workers() if num_workers is None else num_workers
    loader = DataLoader(PairedImageDataset(paths, PairedViews(image_size)),
                        batch_size=batch_size, num_workers=workers)

    torch.manual_seed(seed)
    variants = {"random": gray_conv1_from_rgb(model.teacher.conv1, "random")}
    if checkpoint:
        variants["distilled"] = model.student.conv1
    variants["rgb_sum"] = gray_conv1_from_rgb(model.teacher.conv1, "rgb_sum")

    results = {}
    for name, conv1 in variants.items():
        model.student.conv1 = conv1
        trainer = L.Trainer(accelerator=accelerator, devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        scores = trainer.validate(model, loader, verbose=False)[0]
        results[name] = {m: float(scores[f"val/{m}"]) for m in METRICS}
    return {
        "images": str(images),
        "num_images": len(paths),
        "image_size": image_size,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "arch": hparams["arch"],
        "teacher_weights": hparams["teacher_weights"],
        "target": hparams["target"],
        "data_root": hparams.get("data_root"),
        "results": results,
    }


def format_table(report: dict) -> str:
    """The report's results as a fixed-width text table."""
    lines = [f"{'conv1':<10} {'agreement':>10} {'cosine':>8} {'loss':>12}"]
    for name, row in report["results"].items():
        lines.append(f"{name:<10} {row['agreement']:>10.2%} {row['cosine']:>8.4f} "
                     f"{row['loss']:>12.6g}")
    return "\n".join(lines)

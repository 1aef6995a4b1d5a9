"""Helpers shared by test modules: stand-in face finders, tiny photos, videos and
damaged files the tests write themselves, and a tiny fit for the weight-average callbacks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.faces import Detections, FaceDatasetBuilder
from emotion_lightning.models import EmotionClassifier
from tests.conftest import compose_cfg


class SquareFinder:
    """A stand-in for MTCNN: every bright square (> 100) on a dark photo is a "face".

    Squares averaging >= 180 are confident (0.99), dimmer ones doubtful (0.6). It records
    the size of every image it is shown.
    """

    min_prob = 0.95
    min_face_size = 20

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def detect_all(self, images):
        self.seen += [image.shape[:2] for image in images]
        return [self._find(image) for image in images]

    def _find(self, image: np.ndarray) -> Detections:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        count, _, stats, _ = cv2.connectedComponentsWithStats((gray > 100).astype(np.uint8))
        boxes, probs = [], []
        for left, top, width, height, area in stats[1:count]:
            if area >= 36:
                boxes.append([left, top, left + width, top + height])
                mean = gray[top : top + height, left : left + width].mean()
                probs.append(0.99 if mean >= 180 else 0.6)
        return Detections(
            np.array(boxes, np.float32).reshape(-1, 4),
            np.array(probs, np.float32),
            np.zeros((len(probs), 5, 2), np.float32),
        )


def photo(seed: int, faces=((60, 40, 80),), size=(240, 320), dim: bool = False) -> np.ndarray:
    """A dark RGB photo with textured bright squares ``(left, top, side)``."""
    rng = np.random.default_rng(seed)
    image = np.zeros((*size, 3), np.uint8)
    for left, top, side in faces:
        grid = rng.integers(0, 256, (12, 12), dtype=np.uint8)
        texture = cv2.resize(grid, (side, side), interpolation=cv2.INTER_CUBIC)
        base, spread = (110, 0.25) if dim else (160, 0.35)
        image[top : top + side, left : left + side] = (base + texture * spread)[:, :, None].astype(
            np.uint8
        )
    return image


def save(path: Path, image: np.ndarray | Image.Image, fmt: str = "PNG", **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    picture.save(path, format=fmt, **options)
    return path


def builder(finder=None, **options) -> FaceDatasetBuilder:
    return FaceDatasetBuilder(finder or SquareFinder(), **({"chunk_size": 4} | options))


class StubFinder:
    """Finds the same boxes in every image; raises on call number ``fail_on_call``."""

    def __init__(self, boxes, fail_on_call: int | None = None) -> None:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.found = Detections(boxes, np.linspace(0.99, 0.96, len(boxes)).astype(np.float32),
                                np.zeros((len(boxes), 5, 2), np.float32))
        self.fail_on_call = fail_on_call
        self.calls = 0

    def detect(self, images):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("detector failed")
        return [self.found for _ in images]


def write_video(path: Path, frames: int, fps: float = 7.0, size=(96, 80)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 10 * i, np.uint8))
    writer.release()
    return path


def video_info(path: Path) -> tuple[int, float, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    frames = 0
    while capture.read()[0]:
        frames += 1
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    info = (frames, capture.get(cv2.CAP_PROP_FPS), size)
    capture.release()
    return info


def truncated_jpeg(path: Path, seed: int = 0, size: int = 48) -> Path:
    """A JPEG cut to two thirds: cv2 reads it (partly grey), a checked decoder must not."""
    rng = np.random.default_rng(seed)
    picture = cv2.resize(rng.integers(0, 256, (6, 6), np.uint8), (size, size),
                         interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".jpg", picture)[1].tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: len(data) * 2 // 3])
    assert cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) is not None, "cv2 reads it partly grey"
    return path


def wild_crops(root: Path, count: int = 12, labels=("happy", "sad")) -> Path:
    """``count`` random 60x60 PNG crops in each ``root/<label>/``."""
    rng = np.random.default_rng(0)
    for folder in labels:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / folder / f"{i}.png"), rng.integers(0, 256, (60, 60), np.uint8))
    return root


def bad_links(folder: Path) -> list[str]:
    """A dangling link, a link loop and a link to ``.`` in ``folder``; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dangling.jpg").symlink_to(folder / "gone.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "here.jpg").symlink_to(".")
    return ["dangling.jpg", "here.jpg", "loop.jpg"]


def make_read_only(folder: Path) -> Path:
    """``folder`` made unwritable: by its mode, or for root (whom modes do not stop) by
    mounting a read-only tmpfs on it; skips when neither is possible. Undo with
    :func:`undo_read_only`."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return folder
    if os.system(f"mount -t tmpfs -o ro,size=1m tmpfs '{folder}' 2>/dev/null") != 0:
        pytest.skip("running as root without mount: cannot make a folder read-only")
    return folder


def undo_read_only(folder: Path) -> None:
    if os.geteuid() != 0:
        folder.chmod(0o755)
    else:
        os.system(f"umount '{folder}' 2>/dev/null")


BIN = Path(sys.executable).parent


def run_cli(args: list[str], cwd: Path, timeout: int = 400) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


SYNTH = ["data.num_train=64", "data.num_val=32", "data.num_test=40", "data.batch_size=8"]


TINY_SYNTHETIC = ["experiment=quickstart", "data.num_train=16", "data.num_val=16",
                  "data.num_test=16", "data.batch_size=16", "data.num_workers=0",
                  "model.arch=resnet18", "trainer.max_epochs=1",
                  "extras.print_config=false"]


PIPELINE_TINY = ["model.arch=resnet18", "data.image_size=48", "data.batch_size=8", "data.num_workers=0",
                 "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
                 "+trainer.limit_test_batches=1", "extras.print_config=false"]


def pipeline_cfg(recipe, tmp_path, data_dir, extra=(), epochs=1):
    listed = ",".join(f"'{o}'" for o in [*PIPELINE_TINY, f"trainer.max_epochs={epochs}"])
    overrides = [f"recipe={recipe}", f"paths.data_dir={data_dir}",
                 f"pipeline.common=[{listed}]", *extra]
    if recipe == "full":  # a random teacher: tests never download ImageNet weights
        overrides.append("pipeline.stages.distill.overrides=['experiment=gray_distill',"
                         f"'data.root={data_dir}/gray_distill','model.teacher_weights=null']")
    return compose_cfg("pipeline", overrides, tmp_path / "recipe")


class CountingFaceFinder:
    """A stand-in for FaceDetector: one face in the middle of every photo.

    Each call appends ``<pid> <number of photos>`` to the file ``$FACE_CALLS``.
    """

    min_face_size = 20
    max_side = None

    def __init__(self, min_prob: float = 0.95, **_) -> None:
        self.min_prob = min_prob

    def detect_all(self, images):
        with open(os.environ["FACE_CALLS"], "a") as calls:
            calls.write(f"{os.getpid()} {len(images)}\n")
        return [Detections(np.array([[0.1 * w, 0.1 * h, 0.9 * w, 0.9 * h]], np.float32),
                           np.array([0.99], np.float32), np.zeros((1, 5, 2), np.float32))
                for h, w in (image.shape[:2] for image in images)]


def face_calls(path: Path) -> list[tuple[int, int]]:
    """(pid, photos) of every detection call recorded by :class:`CountingFaceFinder`."""
    lines = path.read_text().split() if path.exists() else []
    return [(int(pid), int(n)) for pid, n in zip(lines[::2], lines[1::2])]


def tiny_net(num_classes: int, conv1_init: str = "random", weights: str | None = None):
    """A small gray backbone with BatchNorm (its buffers are averaged too) and an ``fc`` head."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(1, 8, 3), bn=nn.BatchNorm2d(8), relu=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(8, num_classes)))


def fit_tiny(tmp_path: Path, callbacks, epochs: int = 4):
    """Fit :func:`tiny_net` (seeded) for ``epochs`` of 3 steps with ``callbacks``, saving a
    checkpoint per epoch (``e0.ckpt``, ...) and ``last.ckpt`` in ``tmp_path``; returns the
    trainer, the model and the datamodule."""
    L.seed_everything(0)
    dm = SyntheticDataModule(classes=["happy", "sad", "surprise"], num_train=48, num_val=16,
                             num_test=16, image_size=32, batch_size=16, num_workers=0)
    model = EmotionClassifier(dm.class_names, arch="tests.helpers:tiny_net", image_size=32,
                              optimizer=lambda ps: torch.optim.SGD(ps, lr=0.5))
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True,
                                                     save_top_k=-1, filename="e{epoch}",
                                                     auto_insert_metric_name=False)
    trainer = L.Trainer(max_epochs=epochs, default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[*callbacks, checkpoint])
    trainer.fit(model, datamodule=dm)
    return trainer, model, dm

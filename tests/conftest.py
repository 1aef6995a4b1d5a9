"""Shared fixtures: tiny FER files, a tiny trained checkpoint, Hydra composition, the
``requires_shared`` marker for real data."""

from __future__ import annotations

import contextlib
import csv
import functools
import os
import re
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.constants import FER_EMOTIONS
from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.models import EmotionClassifier

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


# The one marker for tests on real data: ``@requires_shared("fer2013")`` (or several paths, or a
# file: ``requires_shared("group/face_boxes_dlib.json")``; bare ``@requires_shared`` needs the
# folder itself). Such a test is skipped, naming what is missing, unless every path exists under
# ../shared/data (users do not have it; CI and developers do). Select or deselect them with
# ``-m requires_shared`` / ``-m "not requires_shared"``.
requires_shared = pytest.mark.requires_shared


def missing_shared(paths) -> list[Path]:
    """Those of ``paths`` (relative to ../shared/data; none: the folder itself) that are absent."""
    return [SHARED_DATA / p for p in (paths or [""]) if not (SHARED_DATA / p).exists()]


def missing_for(marks) -> list[Path]:
    """What the ``requires_shared`` marks of a test need and is absent; nothing for a test
    without such a mark (it runs without the data)."""
    marks = list(marks)
    return missing_shared([p for mark in marks for p in mark.args]) if marks else []


def pytest_collection_modifyitems(config, items):
    for item in items:
        missing = missing_for(item.iter_markers("requires_shared"))
        if missing:
            item.add_marker(pytest.mark.skip(
                reason=f"needs real data {', '.join(map(str, missing))} (../shared/data: only "
                       "CI and developers have it)"))


def process_errors(output: str, keep: int = 1500) -> str:
    """The end of every traceback in ``output``: with several processes writing to one
    stream (DDP), the first process to fail is not the one whose error comes last."""
    parts = re.split(r"(?=Traceback \(most recent call last\):)", output)[1:]
    observed = [line for line in output.splitlines() if "Child process with PID" in line]
    return "\n".join([*observed, *(f"--- traceback {i} ---\n{part[-keep:]}"
                                    for i, part in enumerate(parts, 1))])


def run_ddp(command: Sequence[str], cwd: Path, outputs: Sequence[Path], env: dict | None = None,
            timeout: int = 400) -> subprocess.CompletedProcess:
    """Run a multi-process (trainer=ddp_sim) command and assert it succeeded.

    CPU DDP talks over gloo's TCP transport, which on rare occasions loses a connection on a
    busy machine ("Connection closed by peer"). Such a run is repeated once, from scratch
    (``outputs`` are removed first), with a warning that shows every process's error; any other
    failure, or a second one, fails the test with every process's error.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(list(command), cwd=cwd, env=env, text=True, capture_output=True,
                              timeout=timeout)

    proc = run()
    if proc.returncode and "Connection closed by peer" in proc.stdout + proc.stderr:
        warnings.warn("gloo lost a connection; running again:\n"
                      + process_errors(proc.stdout + proc.stderr), stacklevel=2)
        for path in outputs:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        proc = run()
    if proc.returncode:
        errors = process_errors(proc.stdout + proc.stderr)
        raise AssertionError(f"exit code {proc.returncode}\n{errors}\n--- end of the output ---\n"
                             f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test run uses its own decoded-image cache and never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("EMOTION_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def fer_images(n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 48x48 images, ``n_per_class`` of each of the seven FER labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(FER_EMOTIONS)), n_per_class)
    images = rng.integers(0, 256, (len(labels), 48, 48), dtype=np.uint8)
    return images, labels


def write_fer_csv(path: Path, images, labels, usages) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        for image, label, usage in zip(images, labels, usages):
            writer.writerow([int(label), " ".join(map(str, image.ravel())), usage])
    return path


def write_fer_folder(root: Path, images, labels, usages) -> Path:
    """The Kaggle folder layout: train/ holds Training, test/ the other usages (PNG: lossless)."""
    for i, (image, label, usage) in enumerate(zip(images, labels, usages)):
        folder = root / ("train" if usage == "Training" else "test") / FER_EMOTIONS[label]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{usage}_{i}.png"), image)
    return root


@pytest.fixture
def fer_csv(tmp_path) -> Path:
    images, labels = fer_images(12)
    usages = np.array(["Training"] * len(labels), dtype=object)
    usages[1::4] = "PublicTest"
    usages[3::4] = "PrivateTest"
    return write_fer_csv(tmp_path / "fer2013.csv", images, labels, usages)


@pytest.fixture
def fer_folder(tmp_path) -> Path:
    """Training + PublicTest only, like ../shared/data/fer2013."""
    images, labels = fer_images(10, seed=1)
    usages = np.where(np.arange(len(labels)) % 4 == 0, "PublicTest", "Training")
    return write_fer_folder(tmp_path / "fer", images, labels, usages)


def compose_cfg(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose a config as the entry point would, with the run dir set to ``output_dir``."""
    if GlobalHydra.instance().is_initialized():  # inside a test's own initialize block
        cfg = compose(config_name=config_name, overrides=overrides)
    else:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir / "logs")
    return cfg


CLASSES = ["angry", "disgust", "happy", "sad", "surprise"]


@contextlib.contextmanager
def one_torch_thread():
    """Torch on one thread inside: on a busy 2-core machine it is several times faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ImbalancedSynthetic(SyntheticDataModule):
    """Synthetic faces whose train split keeps only ``keep[c]`` images of class ``c``."""

    def __init__(self, keep: list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.keep = keep

    def load_splits(self, stage):
        splits = super().load_splits(stage)
        if "train" in splits:
            images, labels = splits["train"]
            idx = np.concatenate([np.flatnonzero(labels == c)[:n] for c, n in enumerate(self.keep)])
            assert np.bincount(labels[idx]).tolist() == self.keep, "too few images per class"
            splits["train"] = images[idx], labels[idx]
        return splits


@functools.cache
def tiny_checkpoint(base: Path, seed: int = 0) -> Path:
    """A ResNet-18 classifier after two training steps on synthetic faces (deterministic;
    ``seed`` 0 is ``tiny.ckpt``, others ``tiny_<seed>.ckpt``).

    Cached by the session's base temp folder, so every test module trains it once.
    """
    path = base / "tiny_checkpoint" / ("tiny.ckpt" if seed == 0 else f"tiny_{seed}.ckpt")
    torch.manual_seed(seed)
    model = EmotionClassifier(CLASSES, arch="resnet18")
    data = SyntheticDataModule(num_train=32, num_val=16, num_test=16, batch_size=16, num_workers=0)
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu",
                        default_root_dir=path.parent)
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.getbasetemp())


@pytest.fixture
def data_dir(tmp_path, fer_folder):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    root.mkdir()
    fer_folder.rename(root / "fer2013")
    for i in range(8):
        (root / "gray_distill" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "gray_distill" / f"c{i % 2}" / f"{i}.jpg"),
                    rng.integers(0, 256, (72, 72, 3), np.uint8))
    for name in ("angry", "disgust", "happy", "sad", "surprise"):
        (root / "processed" / name).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(root / "processed" / name / f"{i}.png"),
                        rng.integers(0, 256, (56, 56), np.uint8))
    return root


@pytest.fixture(scope="session")
def classifier(checkpoint) -> EmotionClassifier:
    return EmotionClassifier.load_from_checkpoint(checkpoint, map_location="cpu").eval()

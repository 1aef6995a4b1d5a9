"""Bad inputs and unsafe files: every checkpoint is loaded weights-only, with clear errors.

A checkpoint file whose unpickling would run code (here: create a marker file) is refused by
every entry point that takes a weights or checkpoint path; a file that is not a checkpoint
fails with ``not a checkpoint: FILE``; ``ckpt_path=last`` without a ``last.ckpt`` fails; a
FER CSV without a test split fails before training; a source checkpoint trained for other
class names does not silently lend its head.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import pathlib
import re
import warnings

import numpy as np
import pytest
import torch

from emotion_lightning.cli.eval import evaluate
from emotion_lightning.cli.train import resume_checkpoint, train
from emotion_lightning.data import FERDataModule
from emotion_lightning.distill_report import load_distiller
from emotion_lightning.models import EmotionClassifier
from emotion_lightning.models.weights import (
    CheckpointError,
    load_checkpoint_file,
    load_state_dict_file,
)
from tests.conftest import CLASSES, compose_cfg, fer_images
from tests.helpers import TINY_SYNTHETIC


class TouchOnUnpickle:
    """Unpickling an instance touches ``marker``: what a malicious checkpoint could do."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


@pytest.fixture
def marker(tmp_path) -> pathlib.Path:
    return tmp_path / "code_ran.marker"


@pytest.fixture
def evil_ckpt(tmp_path, marker, checkpoint) -> pathlib.Path:
    """The tiny classifier checkpoint with one booby-trapped hyper-parameter."""
    blob = torch.load(checkpoint, map_location="cpu", weights_only=True)
    blob["hyper_parameters"]["payload"] = TouchOnUnpickle(marker)
    blob["hyper_parameters"]["target"] = "logits"  # looks like a distiller checkpoint too
    blob["state_dict"]["teacher.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "evil.ckpt"
    torch.save(blob, path)
    # the trap works: a full unpickle runs it (so "the marker is absent" below means refused)
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path


@contextlib.contextmanager
def _refused(path: pathlib.Path):
    """Expects a CheckpointError refusing ``path`` (Hydra's instantiate may wrap it)."""
    with pytest.raises(Exception) as info:
        yield
    error = info.value if isinstance(info.value, CheckpointError) else info.value.__cause__
    assert isinstance(error, CheckpointError), repr(info.value)
    assert re.match(rf"refusing to load {re.escape(str(path))}: .*weights-only", str(error))


def test_unsafe_file_is_refused_by_the_loader(evil_ckpt, marker):
    with _refused(evil_ckpt):
        load_checkpoint_file(evil_ckpt)
    with _refused(evil_ckpt):
        load_state_dict_file(evil_ckpt)
    assert not marker.exists()


def test_unsafe_file_is_refused_as_train_weights(evil_ckpt, marker, tmp_path):
    cfg = compose_cfg("train", [*TINY_SYNTHETIC, f"model.weights={evil_ckpt}"], tmp_path / "run")
    with _refused(evil_ckpt):
        train(cfg)
    assert not marker.exists()


def test_unsafe_file_is_refused_as_train_ckpt_path(evil_ckpt, marker, tmp_path):
    cfg = compose_cfg("train", [*TINY_SYNTHETIC, f"ckpt_path={evil_ckpt}"], tmp_path / "run")
    with _refused(evil_ckpt):
        train(cfg)
    assert not marker.exists()


def test_unsafe_file_is_refused_by_distill_report(evil_ckpt, marker):
    with _refused(evil_ckpt):
        load_distiller(evil_ckpt)
    assert not marker.exists()


def test_unsafe_file_is_refused_by_eval(evil_ckpt, marker, tmp_path):
    cfg = compose_cfg("eval", [f"ckpt_path={evil_ckpt}", "data=synthetic"], tmp_path / "eval")
    with _refused(evil_ckpt):
        evaluate(cfg)
    assert not marker.exists()


def test_unsafe_file_is_refused_by_detect_and_export(evil_ckpt, marker, tmp_path):
    from emotion_lightning.detect.emotion_detector import EmotionDetector
    from emotion_lightning.export import export_classifier

    with _refused(evil_ckpt):
        EmotionDetector.from_checkpoint(evil_ckpt, device="cpu")
    with _refused(evil_ckpt):
        export_classifier(evil_ckpt, tmp_path / "export", ["torchscript"])
    assert not marker.exists()


@pytest.fixture(params=["empty", "text", "random"])
def not_a_checkpoint(request, tmp_path) -> pathlib.Path:
    path = tmp_path / f"{request.param}.ckpt"
    content = {"empty": b"", "text": b"these are my notes, not weights\n",
               "random": np.random.default_rng(0).bytes(4096)}[request.param]
    path.write_bytes(content)
    return path


def test_not_a_checkpoint_as_train_ckpt_path(not_a_checkpoint, tmp_path):
    cfg = compose_cfg("train", [*TINY_SYNTHETIC, f"ckpt_path={not_a_checkpoint}"], tmp_path / "r")
    with pytest.raises(CheckpointError, match=rf"^not a checkpoint: {not_a_checkpoint}"):
        train(cfg)


def test_not_a_checkpoint_as_eval_ckpt_path(not_a_checkpoint, tmp_path):
    cfg = compose_cfg("eval", [f"ckpt_path={not_a_checkpoint}", "data=synthetic"], tmp_path / "e")
    with pytest.raises(CheckpointError, match=rf"^not a checkpoint: {not_a_checkpoint}"):
        evaluate(cfg)


def test_not_a_checkpoint_as_weights(not_a_checkpoint):
    with pytest.raises(CheckpointError, match=rf"^not a checkpoint: {not_a_checkpoint}"):
        EmotionClassifier(CLASSES, arch="resnet18", weights=str(not_a_checkpoint))


def test_ckpt_path_last_without_last_ckpt_fails(tmp_path):
    run = tmp_path / "fresh_run"
    cfg = compose_cfg("train", [*TINY_SYNTHETIC, "ckpt_path=last"], run)
    with pytest.raises(FileNotFoundError, match=rf"no last.ckpt in {run / 'checkpoints'}"):
        train(cfg)
    assert not (run / "metrics.json").exists()  # it did not train from scratch


def test_ckpt_path_last_resolves_to_the_run_dirs_last_ckpt(tmp_path, checkpoint):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(checkpoint.read_bytes())
    cfg = compose_cfg("train", [*TINY_SYNTHETIC, "ckpt_path=last"], run)
    assert resume_checkpoint(cfg) == str(run / "checkpoints" / "last.ckpt")


def test_a_second_fit_in_a_run_dir_neither_resumes_nor_overwrites_silently(tmp_path, checkpoint,
                                                                           monkeypatch):
    """Lightning would resume a run dir's last.ckpt when ckpt_path is unset: refuse instead."""
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "interrupted.ckpt").write_bytes(checkpoint.read_bytes())
    (run / "config.yaml").write_text("the earlier run's config\n")
    cfg = compose_cfg("train", [*TINY_SYNTHETIC, "ckpt_path=null"], run)
    with pytest.raises(FileExistsError, match=r"interrupted\.ckpt is from an earlier run in this "
                                              r"run dir: add ckpt_path=last to resume it"):
        train(cfg)
    assert (run / "config.yaml").read_text() == "the earlier run's config\n"
    assert not (run / "metrics.json").exists()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # a requeued job resumes it unasked
    assert resume_checkpoint(cfg) == str(run / "checkpoints" / "interrupted.ckpt")
    # a finished run resumed with ckpt_path=last trains nothing: its metrics are kept, and said so
    finished = tmp_path / "finished"
    train(compose_cfg("train", TINY_SYNTHETIC, finished))
    before = (finished / "metrics.json").read_text()
    again = compose_cfg("train", [*TINY_SYNTHETIC, "ckpt_path=last"], finished)
    with pytest.raises(RuntimeError, match=r"last\.ckpt is from a finished run \(step 1;"
                                           r".*Raise trainer\.max_epochs"):
        train(again)
    assert (finished / "metrics.json").read_text() == before
    longer = compose_cfg("train", [*TINY_SYNTHETIC, "ckpt_path=last", "trainer.max_epochs=2"],
                         finished)
    assert train(longer)[1]["trainer"].global_step == 2  # it goes on when there is more to do
    # a fresh fit in an empty run dir hears nothing about checkpoints it does not have
    monkeypatch.delenv("SLURM_RESTART_COUNT")
    fresh = compose_cfg("train", [*TINY_SYNTHETIC, "trainer.max_epochs=1"], tmp_path / "fresh")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(fresh)
    assert not [w for w in caught if "ckpt_path" in str(w.message)], [str(w.message) for w in caught]


def test_own_checkpoint_still_loads_weights_only(checkpoint):
    from emotion_lightning.models.loading import load_classifier

    model = load_classifier(checkpoint)
    assert model.class_names == CLASSES


def test_weights_with_other_class_names_reinitialise_the_head(checkpoint, caplog):
    source = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    same = EmotionClassifier(CLASSES, arch="resnet18", weights=str(checkpoint))
    assert torch.equal(same.net.fc.weight, source["net.fc.weight"])  # same classes: head reused

    reordered = list(reversed(CLASSES))
    with caplog.at_level(logging.WARNING):
        model = EmotionClassifier(reordered, arch="resnet18", weights=str(checkpoint))
    message = next(r.getMessage() for r in caplog.records if "trained for classes" in r.message)
    assert str(CLASSES) in message and str(reordered) in message
    assert "re-initialised the classifier head" in message
    assert not torch.equal(model.net.fc.weight, source["net.fc.weight"])
    assert torch.equal(model.net.layer1[0].conv1.weight, source["net.layer1.0.conv1.weight"])


def _csv_without_usage(path: pathlib.Path) -> pathlib.Path:
    images, labels = fer_images(8)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels"])
        for image, label in zip(images, labels):
            writer.writerow([int(label), " ".join(map(str, image.ravel()))])
    return path


def test_csv_without_usage_fails_before_training(tmp_path):
    path = _csv_without_usage(tmp_path / "fer2013.csv")
    data = FERDataModule(path, cache_dir=None, num_workers=0, drop_blank=False)
    with pytest.raises(ValueError, match=rf"{path}: every image is Training.*Usage column.*"
                                         r"split=random"):
        data.setup("fit")


def test_csv_without_usage_and_split_random_makes_its_own_test_split(tmp_path):
    path = _csv_without_usage(tmp_path / "fer2013.csv")
    data = FERDataModule(path, split="random", train_fraction=0.6, test_fraction=0.2,
                         cache_dir=None, num_workers=0, drop_blank=False)
    data.setup("fit")
    data.setup("test")
    assert len(data.datasets["test"]) > 0

"""The training step stays off the host: no tensor is read back (``.item()``, ``.tolist()``,
``float()``, ``.cpu()``...) between a batch's start and end when no logging or check is due,
and ``model.compile`` runs the backbone compiled with unchanged checkpoints."""

from __future__ import annotations

import traceback
from pathlib import Path

import lightning as L
import pytest
import torch

from emotion_lightning.callbacks import StopOnNonFiniteLoss
from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.models import EmotionClassifier
from tests.conftest import one_torch_thread

READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
#: Reads of tensors that live on the host by design, whatever the device: BatchMixer's draws
#: from torch's CPU generator (and the Beta distribution's checks of its CPU parameters), and
#: the optimizers' step counters (torch keeps them on the CPU unless ``capturable``).
HOST_TENSORS = ("emotion_lightning/models/mixing.py", "torch/distributions/", "torch/optim/")


class ReadRecorder(L.Callback):
    """Records where a tensor is read on the host while a training batch runs."""

    def __init__(self, monkeypatch) -> None:
        self.active = False
        self.reads: list[str] = []
        for name in READS:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, original))

    def _wrap(self, name, original):
        def read(tensor, *args, **kwargs):
            if self.active:
                caller = traceback.extract_stack(limit=2)[0]  # the frame that reads
                if not any(host in Path(caller.filename).as_posix() for host in HOST_TENSORS):
                    self.reads.append(f"{name} at {caller.filename}:{caller.lineno}")
            return original(tensor, *args, **kwargs)
        return read

    def on_train_batch_start(self, *args) -> None:
        self.active = True

    def on_train_batch_end(self, *args) -> None:
        self.active = False


def test_training_steps_read_nothing_back_from_the_device(tmp_path, monkeypatch):
    recorder = ReadRecorder(monkeypatch)
    data = SyntheticDataModule(classes=["happy", "sad"], num_train=32, num_val=8, num_test=8,
                               batch_size=8, num_workers=0)
    model = EmotionClassifier(data.class_names, arch="resnet18", mixup_alpha=0.2,
                              cutmix_alpha=1.0, label_smoothing=0.1)
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=1000, limit_val_batches=0, accelerator="cpu",
                        callbacks=[recorder, StopOnNonFiniteLoss(every_n_steps=1000)],
                        default_root_dir=tmp_path)
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
    assert trainer.global_step == 4
    assert recorder.reads == []


def test_the_finite_loss_check_reads_every_n_steps(tmp_path, monkeypatch):
    recorder = ReadRecorder(monkeypatch)
    data = SyntheticDataModule(classes=["happy", "sad"], num_train=48, num_val=8, num_test=8,
                               batch_size=8, num_workers=0)
    model = EmotionClassifier(data.class_names, arch="resnet18")
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=1000, limit_val_batches=0, accelerator="cpu",
                        callbacks=[recorder, StopOnNonFiniteLoss(every_n_steps=3)],
                        default_root_dir=tmp_path)
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
    reads = [r for r in recorder.reads if "finite_loss.py" in r]
    assert len(reads) == 2 and all(r.startswith("tolist") for r in reads), recorder.reads


def test_compile_runs_the_backbone_compiled_and_saves_plain_weights(tmp_path):
    data = SyntheticDataModule(classes=["happy", "sad"], num_train=16, num_val=8, num_test=8,
                               batch_size=8, num_workers=0)
    model = EmotionClassifier(data.class_names, arch="resnet18", compile="eager")
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, accelerator="cpu", default_root_dir=tmp_path)
    with one_torch_thread():
        trainer.fit(model, datamodule=data)
    assert model._compiled and type(model._compiled[0]).__name__ == "OptimizedModule"
    assert all(not k.startswith("_") and "_orig_mod" not in k for k in model.state_dict())
    trainer.save_checkpoint(tmp_path / "c.ckpt")
    loaded = EmotionClassifier.from_checkpoint(tmp_path / "c.ckpt")
    x = torch.randn(2, 1, 48, 48)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-4, atol=1e-4)
    with pytest.raises(Exception, match="nope"):  # an unknown backend is refused by torch
        EmotionClassifier(["happy", "sad"], compile="nope").setup("fit")

"""The device-resident loader (data.loader=device): shards, val/test tensors equal to the
DataLoader path's, seeded epochs, Lightning fit and mid-epoch resume, DDP with one shard per rank."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DistributedSampler

from emotion_lightning.cli.eval import evaluate
from emotion_lightning.cli.train import train
from emotion_lightning.data import SyntheticDataModule
from emotion_lightning.data.device_loader import DeviceBatches, ShardSampler
from emotion_lightning.models import EmotionClassifier
from tests.conftest import CLASSES, compose_cfg, one_torch_thread, run_ddp

BIN = Path(sys.executable).parent
TINY = {"num_train": 50, "num_val": 20, "num_test": 18, "batch_size": 8, "num_workers": 0}


def test_shards_follow_distributed_sampler_and_reshuffle_each_epoch():
    # in order: exactly DistributedSampler's indices (padded with the first ones), per rank
    for n, world in ((10, 3), (12, 2), (7, 1)):
        for rank in range(world):
            ours = ShardSampler(n, 4, rank, world, shuffle=False, drop_last=False)
            theirs = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False)
            assert ours.indices().tolist() == list(theirs)
    # shuffled: the ranks split one permutation (same on every rank), new each epoch, seeded
    ranks = [ShardSampler(50, 8, r, 2, seed=7) for r in range(2)]
    first = [s.indices() for s in ranks]
    assert sorted(torch.cat(first).tolist()) == list(range(50))
    for s in ranks:
        s.set_epoch(1)
    second = [s.indices() for s in ranks]
    assert not torch.equal(first[0], second[0])
    assert sorted(torch.cat(second).tolist()) == list(range(50))
    again = ShardSampler(50, 8, 0, 2, seed=7)
    again.set_epoch(1)
    assert torch.equal(again.indices(), second[0])
    assert not torch.equal(ShardSampler(50, 8, 0, 2, seed=8).indices(), first[0])
    # 25 per rank in batches of 8: the last incomplete batch is dropped when training
    assert len(ranks[0]) == 3 and [len(b) for b in ranks[0].batches()] == [8, 8, 8]
    assert len(ShardSampler(50, 8, 0, 2, shuffle=False, drop_last=False)) == 4
    assert len(ShardSampler(5, 8)) == 1  # a split smaller than a batch keeps its one batch


def test_val_and_test_batches_equal_the_dataloader_path():
    workers = SyntheticDataModule(image_size=96, loader="workers", **TINY)
    device = SyntheticDataModule(image_size=96, loader="device", **TINY)
    workers.setup()
    device.setup()
    for split in ("val_dataloader", "test_dataloader", "predict_dataloader"):
        ours, theirs = list(getattr(device, split)()), list(getattr(workers, split)())
        assert len(ours) == len(theirs) == len(getattr(device, split)())
        for (x, y), (x_ref, y_ref) in zip(ours, theirs):
            assert x.dtype == x_ref.dtype and x.shape == x_ref.shape
            torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-6)
            assert torch.equal(y, y_ref)


def test_train_epochs_cover_the_split_once_seeded_and_augmented():
    dm = SyntheticDataModule(image_size=48, loader="device", augment=False, **TINY)
    dm.setup()
    torch.manual_seed(3)
    loader = dm.train_dataloader()
    assert isinstance(loader, DeviceBatches) and len(loader) == 6  # 50 // 8
    reference = dm.datasets["train"]
    rows = {reference.transform(image).numpy().tobytes(): i for i, image in enumerate(reference.images)}
    seen = []
    for x, y in loader:
        assert x.shape == (8, 1, 48, 48) and x.dtype == torch.float32 and y.dtype == torch.int64
        found = [rows[image.numpy().tobytes()] for image in x]
        assert y.tolist() == reference.labels[found].tolist()
        seen += found
    assert len(set(seen)) == 48  # every image at most once, the 2 left over dropped
    loader.sampler.set_epoch(1)
    assert [rows[x.numpy().tobytes()] for x in next(iter(loader))[0]] != seen[:8]
    torch.manual_seed(3)
    assert torch.equal(next(iter(dm.train_dataloader()))[0], next(iter(loader.__class__(
        loader.images, loader.labels, ShardSampler(50, 8, seed=3), None, 3)))[0])
    augmented = SyntheticDataModule(image_size=48, loader="device", **TINY)
    augmented.setup()
    x, _ = next(iter(augmented.train_dataloader()))
    assert x.shape == (8, 1, 48, 48) and not any(x[i].numpy().tobytes() in rows for i in range(8))


def test_unknown_loader_is_refused():
    with pytest.raises(ValueError, match=r"data.loader must be one of \('workers', 'device'\), got 'gpu'"):
        SyntheticDataModule(loader="gpu")


class BatchLog(L.Callback):
    """A fingerprint of every training batch, by global step."""

    def __init__(self) -> None:
        self.sums: dict[int, float] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        assert batch[0].device == module.device
        self.sums[trainer.global_step] = float(batch[0].double().sum())


def fit(root: Path, max_steps: int, resume: Path | None = None, save_every: int | None = None):
    torch.manual_seed(0)
    model = EmotionClassifier(CLASSES, arch="resnet18")
    data = SyntheticDataModule(loader="device", augmentation={"pad_crop": 4}, seed=1, **TINY)
    log = BatchLog()
    callbacks = [log]
    if save_every:
        callbacks.append(ModelCheckpoint(root, "{step}", every_n_train_steps=save_every,
                                         save_top_k=-1))
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        accelerator="cpu", callbacks=callbacks, default_root_dir=root,
                        enable_checkpointing=bool(save_every))
    with one_torch_thread():
        trainer.fit(model, datamodule=data, ckpt_path=resume, weights_only=False)
    return model, log.sums


@pytest.mark.parametrize("stop", [4, 6])  # inside the second epoch; at the end of the first
def test_resume_goes_on_with_the_same_batches_and_weights(tmp_path, stop):
    whole, batches = fit(tmp_path / "whole", 9, save_every=stop)
    assert len(batches) == 9 and len(set(batches.values())) == 9  # six per epoch, reshuffled
    checkpoint = tmp_path / "whole" / f"step={stop}.ckpt"
    assert torch.load(checkpoint, weights_only=False)["loops"]["fit_loop"]["state_dict"][
        "combined_loader"] == [{"epoch": (stop - 1) // 6, "batches": (stop - 1) % 6 + 1}]
    resumed, rest = fit(tmp_path / "resumed", 9, resume=checkpoint)
    assert rest == {step: s for step, s in batches.items() if step >= stop}
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_quickstart_fits_and_tests_end_to_end_on_the_device_loader(tmp_path):
    cfg = compose_cfg("train", ["experiment=quickstart", "data.loader=device", "trainer.max_epochs=2",
                                "data.num_train=32", "data.num_val=16", "data.num_test=16",
                                "data.batch_size=8", "data.augment=true"], tmp_path)
    with one_torch_thread():
        metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 8  # 2 epochs of 32 // 8
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["train/img_per_s"] > 0 and 0 <= written["test/acc"] <= 1
    assert isinstance(objects["datamodule"].train_dataloader(), DeviceBatches)


@pytest.mark.slow
def test_ddp_two_processes_each_take_their_shard(tmp_path):
    run = tmp_path / "run"
    synth = ["data.num_train=64", "data.num_val=32", "data.num_test=40", "data.batch_size=8"]
    # without the progress bar, which syncs the epoch's metrics on rank 0 alone
    run_ddp([str(BIN / "emotion-train"), "experiment=quickstart", "trainer=ddp_sim",
             "data.loader=device", "trainer.max_epochs=1", *synth, f"hydra.run.dir={run}",
             "extras.print_config=false", "callbacks.progress_bar=null"], cwd=tmp_path,
            outputs=[run], timeout=300)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    # 64 images over 2 ranks: 4 batches of 8 each (one process alone would take 8 steps)
    assert last["global_step"] == 4
    assert last["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "batches": 4}]
    metrics = json.loads((run / "metrics.json").read_text())
    cfg = compose_cfg("eval", [f"ckpt_path={metrics['best_ckpt']}", "data=synthetic", *synth],
                      tmp_path / "eval")
    single = evaluate(cfg)  # the test split synced over both ranks equals one process's
    assert single["num_samples"] == 40
    assert metrics["test/acc"] == pytest.approx(single["acc"], abs=1e-6)
    assert np.isfinite(metrics["test/macro_f1"])


def test_cli_resume_with_ckpt_path_last_matches_one_uninterrupted_run(tmp_path):
    common = ["experiment=quickstart", "data.loader=device", "data.augment=true",
              "data.num_train=24", "data.num_val=8", "data.num_test=8", "data.batch_size=8",
              "test=false", "callbacks.early_stopping=null",
              "model.scheduler=null"]  # an epoch-count schedule would differ with max_epochs

    def run(folder: str, *extra: str):
        cfg = compose_cfg("train", [*common, *extra], tmp_path / folder)
        with one_torch_thread():
            _, objects = train(cfg)
        return objects["trainer"].global_step, objects["model"].state_dict()

    steps, whole = run("whole", "trainer.max_epochs=2")
    assert run("resumed", "trainer.max_epochs=1")[0] == 3
    resumed_steps, resumed = run("resumed", "trainer.max_epochs=2", "ckpt_path=last")
    assert resumed_steps == steps == 6
    for name, value in whole.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)


def test_making_batches_reads_nothing_back_from_the_device(monkeypatch):
    dm = SyntheticDataModule(image_size=48, loader="device", augmentation={
        "pad_crop": 4, "brightness_contrast": 0.2, "erasing_p": 0.5}, **TINY)
    dm.setup()
    loader = dm.train_dataloader()
    reads = []
    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__"):
        original = getattr(torch.Tensor, name)

        def read(tensor, *args, _name=name, _original=original, **kwargs):
            reads.append(_name)
            return _original(tensor, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, read)
    batches = [x for x, _ in loader]
    monkeypatch.undo()
    assert len(batches) == 6 and reads == []  # so a GPU never waits for the host

"""Gray backbone: GrayDistillDataModule, Conv1Distiller, its checkpoint and the report."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.constants import GRAY_MEAN, GRAY_STD, IMAGENET_MEAN, IMAGENET_STD
from emotion_lightning.data.gray_distill import (
    GrayDistillDataModule,
    PairedImageDataset,
    PairedViews,
    find_rgb_images,
)
from emotion_lightning.data.imagenet_classes import imagenet_class_names, write_class_queries
from emotion_lightning.models.classifier import EmotionClassifier
from emotion_lightning.models.gray_distill import Conv1Distiller
from emotion_lightning.models.gray_resnet import build_gray_resnet

SIZE = 64
NUM_RGB = 12


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    """12 colour images (png/jpg, nested), 1 gray png, 1 corrupt jpg and a non-image file."""
    root = tmp_path_factory.mktemp("rgb_images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:72, 0:96]
    for i in range(NUM_RGB):
        folder = root / f"class_{i % 3}" / ("nested" if i % 4 == 0 else "")
        folder.mkdir(parents=True, exist_ok=True)
        channels = [(xx * rng.uniform(1, 3) + yy * rng.uniform(0, 2)) % 256,
                    (yy * rng.uniform(1, 3)) % 256, rng.uniform(0, 255, xx.shape)]
        image = Image.fromarray(np.stack(channels, -1).astype(np.uint8))
        image.save(folder / (f"{i}.png" if i % 2 else f"{i}.JPG"))
    Image.fromarray(rng.integers(0, 255, (50, 50), dtype=np.uint8)).save(root / "gray.png")
    (root / "broken.jpg").write_bytes(b"not an image")
    (root / "notes.txt").write_text("ignored")
    return root


def make_datamodule(root: Path) -> GrayDistillDataModule:
    return GrayDistillDataModule(root, image_size=SIZE, batch_size=4, num_workers=0,
                                 val_fraction=0.25, seed=0)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def batch_loss(model: Conv1Distiller, batch: dict) -> float:
    out = model.outputs(batch)
    return torch.nn.functional.mse_loss(out["student_logits"], out["teacher_logits"]).item()


@pytest.fixture(scope="module")
def trained(image_root, tmp_path_factory):
    """A resnet18 distiller (random teacher) before and after 6 steps on one fixed batch (the
    train split, centre crops, so the loss is comparable), validated every step; its checkpoint."""
    L.seed_everything(0)
    datamodule = make_datamodule(image_root)
    datamodule.setup("fit")
    train_paths = datamodule.datasets["train"].paths
    fixed = DataLoader(PairedImageDataset(train_paths, PairedViews(SIZE)), batch_size=len(train_paths))
    batch = next(iter(fixed))
    model = Conv1Distiller("resnet18", teacher_weights=None, data_root=str(image_root))
    before, loss_before = snapshot(model), batch_loss(model, batch)
    trainer = quiet_trainer(max_steps=6, enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.fit(model, fixed, datamodule.val_dataloader())
    ckpt = tmp_path_factory.mktemp("distill") / "distiller.ckpt"
    trainer.save_checkpoint(ckpt)
    return {"model": model, "before": before, "loss_before": loss_before,
            "loss_after": batch_loss(model, batch), "ckpt": ckpt, "trainer": trainer}


# -- data ------------------------------------------------------------------------------------
def test_find_rgb_images_skips_gray_and_unreadable(image_root):
    paths, gray, unreadable = find_rgb_images(image_root)
    assert len(paths) == NUM_RGB and (gray, unreadable) == (1, 1)
    assert any("nested" in p.parts for p in paths)


@pytest.mark.parametrize("make_root", ["missing", "empty", "gray_only"])
def test_unusable_root_is_a_clear_error(tmp_path, make_root):
    root = tmp_path / "images"
    if make_root != "missing":
        root.mkdir()
    if make_root == "gray_only":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "a.png")
    with pytest.raises(FileNotFoundError, match="folder tree of RGB images"):
        make_datamodule(root).setup("fit")


def test_split_is_seeded_disjoint_and_complete(image_root):
    first, second = make_datamodule(image_root), make_datamodule(image_root)
    splits = first.split_paths()
    assert splits == second.split_paths()
    assert len(splits["val"]) == 3 and len(splits["train"]) == NUM_RGB - 3
    assert set(splits["train"]).isdisjoint(splits["val"])
    other = GrayDistillDataModule(image_root, val_fraction=0.25, seed=1).split_paths()
    assert other["val"] != splits["val"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_views_share_one_crop(image_root, split):
    """The gray view is the luma of the colour view: same crop, same flip."""
    torch.manual_seed(0)
    datamodule = make_datamodule(image_root)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader() if split == "train" else datamodule.val_dataloader()
    batch = next(iter(loader))
    assert batch["rgb"].shape[1:] == (3, SIZE, SIZE) and batch["gray"].shape[1:] == (1, SIZE, SIZE)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    colour = batch["rgb"] * std + mean
    luma = (0.299 * colour[:, 0] + 0.587 * colour[:, 1] + 0.114 * colour[:, 2]).unsqueeze(1)
    gray = batch["gray"] * GRAY_STD + GRAY_MEAN
    assert (gray - luma).abs().max() <= 0.6 / 255  # uint8 rounding of the luma only


# -- model -----------------------------------------------------------------------------------
def test_training_changes_only_conv1(trained):
    model, before = trained["model"], trained["before"]
    after = model.state_dict()
    assert set(after) == set(before)
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["student.conv1.weight"]
    for key, value in after.items():  # the student's frozen layers are the teacher's
        if key.startswith("student.") and key != "student.conv1.weight":
            assert torch.equal(value, after["teacher." + key.removeprefix("student.")])


def test_loss_decreases(trained):
    assert trained["trainer"].global_step == 6
    assert trained["loss_after"] < 0.95 * trained["loss_before"]


def test_teacher_and_student_stay_in_eval_mode(trained):
    model = trained["model"]
    model.train()
    assert model.training
    for net in (model.teacher, model.student):
        assert not any(m.training for m in net.modules())


def test_optimizer_gets_only_conv1():
    model = Conv1Distiller("resnet18", teacher_weights=None,
                           optimizer=partial(torch.optim.SGD, lr=0.1),
                           scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=5, gamma=0.5))
    config = model.configure_optimizers()
    params = [p for group in config["optimizer"].param_groups for p in group["params"]]
    assert len(params) == 1 and params[0] is model.student.conv1.weight
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["student.conv1.weight"]


def test_rgb_sum_matches_teacher_on_equal_channels():
    torch.manual_seed(0)
    model = Conv1Distiller("resnet18", teacher_weights=None, conv1_init="rgb_sum")
    gray = torch.randn(2, 1, 32, 32)
    out = model.outputs({"rgb": gray.expand(-1, 3, -1, -1), "gray": gray})
    torch.testing.assert_close(out["student_logits"], out["teacher_logits"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["student_features"], out["teacher_features"],
                               rtol=1e-4, atol=1e-4)
    random = Conv1Distiller("resnet18", teacher_weights=None, conv1_init="random")
    out = random.outputs({"rgb": gray.expand(-1, 3, -1, -1), "gray": gray})
    assert not torch.allclose(out["student_logits"], out["teacher_logits"], atol=1e-3)


def test_features_target_trains_conv1(image_root):
    model = Conv1Distiller("resnet18", teacher_weights=None, target="features")
    datamodule = make_datamodule(image_root)
    conv1 = model.student.conv1.weight.detach().clone()
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                            enable_checkpointing=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule)
    assert not torch.equal(conv1, model.student.conv1.weight)
    assert {"train/loss", "val/loss", "val/cosine", "val/agreement"} <= set(trainer.callback_metrics)


def test_invalid_target_is_rejected():
    with pytest.raises(ValueError, match="target"):
        Conv1Distiller("resnet18", teacher_weights=None, target="pixels")


# -- checkpoint ------------------------------------------------------------------------------
def test_checkpoint_keeps_provenance(trained, image_root):
    hparams = torch.load(trained["ckpt"], map_location="cpu", weights_only=False)["hyper_parameters"]
    assert hparams["arch"] == "resnet18" and hparams["teacher_weights"] is None
    assert hparams["conv1_init"] == "random" and hparams["target"] == "logits"
    assert hparams["data_root"] == str(image_root)


def test_checkpoint_loads_into_gray_resnet(trained):
    net = build_gray_resnet("resnet18", num_classes=5, weights=str(trained["ckpt"]))
    student = trained["model"].student
    assert torch.equal(net.conv1.weight, student.conv1.weight)
    assert torch.equal(net.layer4[1].bn2.running_var, student.layer4[1].bn2.running_var)
    assert net.fc.out_features == 5


def test_checkpoint_loads_into_classifier_and_trains(trained):
    classes = ["angry", "happy", "sad"]
    model = EmotionClassifier(classes, arch="resnet18", weights=str(trained["ckpt"]),
                              image_size=SIZE)
    assert torch.equal(model.net.conv1.weight, trained["model"].student.conv1.weight)
    x, y = torch.randn(8, 1, SIZE, SIZE), torch.randint(0, len(classes), (8,))
    loader = DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0, enable_checkpointing=False)
    trainer.fit(model, loader)
    assert trainer.global_step == 1
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


# -- configs and report ----------------------------------------------------------------------
def test_experiment_config_instantiates(image_root):
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    overrides = ["experiment=gray_distill", f"data.root={image_root}", "model.arch=resnet18",
                 "model.teacher_weights=null", f"data.image_size={SIZE}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.optimized_metric == "val/loss" and cfg.optimized_mode == "min"
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    assert isinstance(datamodule, GrayDistillDataModule) and isinstance(model, Conv1Distiller)
    assert model.hparams.data_root == str(image_root)
    config = model.configure_optimizers()
    assert isinstance(config["optimizer"], torch.optim.Adam)
    assert config["lr_scheduler"]["scheduler"].step_size == 5


def test_imagenet_class_queries(tmp_path):
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench"
    out = tmp_path / "queries.txt"
    assert write_class_queries(out, "{name} photo") == 1000
    assert out.read_text().splitlines()[1] == "goldfish photo"


def test_distill_report(trained, image_root, tmp_path):
    from hydra import compose, initialize_config_dir

    from emotion_lightning.cli.distill_report import run

    overrides = [f"images={image_root}", f"checkpoint={trained['ckpt']}", f"report.image_size={SIZE}",
                 f"report.batch_size={NUM_RGB}", "report.num_workers=0", "report.accelerator=cpu",
                 f"output={tmp_path / 'report.json'}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("distill_report", overrides=overrides)
    report = run(cfg)
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert report["num_images"] == NUM_RGB and report["arch"] == "resnet18"
    results = report["results"]
    assert list(results) == ["random", "distilled", "rgb_sum"]
    for row in results.values():
        assert 0 <= row["agreement"] <= 1 and -1 <= row["cosine"] <= 1 and row["loss"] >= 0
    paths, _, _ = find_rgb_images(image_root)
    batch = next(iter(DataLoader(PairedImageDataset(paths, PairedViews(SIZE)), batch_size=NUM_RGB)))
    assert results["distilled"]["loss"] == pytest.approx(batch_loss(trained["model"], batch), rel=1e-4)
    assert results["rgb_sum"]["loss"] != pytest.approx(results["random"]["loss"], rel=1e-3)


def test_report_rejects_other_checkpoints(tmp_path):
    from emotion_lightning.distill_report import load_distiller

    path = tmp_path / "classifier.ckpt"
    torch.save({"state_dict": {"net.conv1.weight": torch.zeros(1)}, "hyper_parameters": {}}, path)
    with pytest.raises(ValueError, match="not a Conv1Distiller checkpoint"):
        load_distiller(path)

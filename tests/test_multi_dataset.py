"""Training on several datasets at once: weighted draws, one validation per dataset logged
under its name (val/<name>/acc) beside the overall val/acc, and the Hydra config."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import open_dict

from emotion_lightning.cli.train import train
from emotion_lightning.data import FERDataModule, MultiDataModule, RAFDBDataModule
from tests.conftest import compose_cfg, fer_images, one_torch_thread, write_fer_csv
from tests.dataset_fixtures import write_rafdb

SEVEN = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    (root / "fer2013").mkdir(parents=True)
    images, labels = fer_images(10)
    usages = np.where(np.arange(len(labels)) % 4 == 0, "PublicTest", "Training")
    write_fer_csv(root / "fer2013" / "fer2013.csv", images, labels, usages)
    write_rafdb(root / "rafdb" / "basic", per_label=8)
    return root


def members(data_dir, tmp_path, **kwargs):
    common = {"classes": SEVEN, "num_workers": 0, "cache_dir": tmp_path / "cache"}
    return {"fer": FERDataModule(data_dir / "fer2013", **common),
            "rafdb": RAFDBDataModule(data_dir / "rafdb" / "basic", **common, **kwargs)}


def test_training_draws_follow_the_weights_and_each_dataset_validates_alone(data_dir, tmp_path):
    multi = MultiDataModule(members(data_dir, tmp_path), weights={"fer": 0.8, "rafdb": 0.2},
                            classes=SEVEN, image_size=40, batch_size=10, num_workers=0)
    multi.setup("fit")
    sizes = multi._train_sizes
    assert len(multi.datasets["train"]) == sizes["fer"] + sizes["rafdb"]
    assert multi.datasets["train"].images.shape[1:] == (40, 40)  # 48 and 100 px, resized
    drawn = np.concatenate([list(multi.train_dataloader().sampler) for _ in range(20)])
    from_fer = np.mean(drawn < sizes["fer"])
    assert 0.72 < from_fer < 0.88  # 0.8 of the draws, though FER is not 0.8 of the images
    val = multi.val_dataloader()
    assert [len(loader.dataset) for loader in val] == [len(multi.parts["val"][n])
                                                       for n in ("fer", "rafdb")]
    x, _ = next(iter(val[1]))
    assert x.shape[1:] == (1, 40, 40)
    multi.setup("test")
    assert len(multi.test_dataloader()) == 2


def test_keeping_some_classes_reaches_each_datasets_parts(data_dir, tmp_path):
    multi = MultiDataModule(members(data_dir, tmp_path), classes=SEVEN, image_size=40,
                            num_workers=0)
    multi.setup("fit")
    before = {split: {name: part.labels.copy() for name, part in parts.items()}
              for split, parts in multi.parts.items()}
    train_before, fer_size = multi.datasets["train"].labels.copy(), multi._train_sizes["fer"]
    multi.keep_classes(["happy", "angry"], ["fit", "test"])
    assert multi.class_names == ["happy", "angry"]
    for split in ("val", "test"):
        for name, part in multi.parts[split].items():
            old = before[split][name]
            assert len(part) == np.isin(old, [3, 0]).sum() > 0
            assert part.labels.tolist() == [0 if y == 3 else 1 for y in old if y in (3, 0)]
    assert multi._train_sizes == {  # the training draws' per-dataset counts follow
        "fer": np.isin(train_before[:fer_size], [3, 0]).sum(),
        "rafdb": np.isin(train_before[fer_size:], [3, 0]).sum()}
    assert sum(multi._train_sizes.values()) == len(multi.datasets["train"])


def test_bad_mixes_are_refused(data_dir, tmp_path):
    parts = members(data_dir, tmp_path)
    with pytest.raises(ValueError, match=r"data\.datasets\.fer has classes \['happy', 'sad'\], this"):
        MultiDataModule({"fer": FERDataModule(data_dir / "fer2013", classes=["happy", "sad"]),
                         "rafdb": parts["rafdb"]}, classes=SEVEN)
    with pytest.raises(ValueError, match="but not"):
        MultiDataModule(parts, weights={"fer": 1.0}, classes=SEVEN)
    with pytest.raises(ValueError, match="weight > 0"):
        MultiDataModule(parts, weights={"fer": 1.0, "rafdb": 0.0}, classes=SEVEN)
    with pytest.raises(ValueError, match="needs data.loader=workers"):
        MultiDataModule(parts, weights={"fer": 1.0, "rafdb": 1.0}, classes=SEVEN, loader="device")


def test_emotion_train_logs_each_datasets_validation(data_dir, tmp_path):
    run = tmp_path / "run"
    cfg = compose_cfg("train", ["data=fer_rafdb", "class_set=seven", f"paths.data_dir={data_dir}",
                                f"paths.cache_dir={tmp_path / 'cache'}", "data.num_workers=0",
                                "data.batch_size=16", "model.arch=resnet18", "trainer.max_epochs=1",
                                "optimized_metric=val/rafdb/balanced_acc",
                                "extras.print_config=false"], run)
    with open_dict(cfg):
        cfg.callbacks.model_checkpoint.monitor = "val/rafdb/balanced_acc"
    with one_torch_thread():
        metrics, objects = train(cfg)
    for name in ("fer", "rafdb"):
        for key in ("acc", "balanced_acc", "macro_f1"):
            assert f"val/{name}/{key}" in metrics and f"test/{name}/{key}" in metrics
    assert "val/acc" in metrics and "test/acc" in metrics
    datamodule = objects["datamodule"]
    n_test = sum(len(d) for d in datamodule.parts["test"].values())
    assert sum(map(sum, objects["model"].confusion_matrix("test"))) == n_test
    assert metrics["best_ckpt"]  # checkpointed on the per-dataset metric

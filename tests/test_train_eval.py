"""Entry points: config composition, fast_dev_run of every experiment, train -> eval, real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from emotion_lightning.cli import CONFIG_DIR
from emotion_lightning.cli.eval import evaluate
from emotion_lightning.cli.train import optimized_value, train
from tests.conftest import SHARED_DATA, compose_cfg, requires_shared

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
GROUP_OPTIONS = {
    group: sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))
    for group in ("data", "model", "trainer", "logger", "callbacks", "debug")
}


def tiny_data_overrides(cfg, fixtures: dict[str, Path]) -> None:
    """Point any experiment at small local data so it runs in seconds."""
    target = cfg.data._target_.rsplit(".", 1)[-1]
    roots = {"FERDataModule": "fer", "WildDataModule": "wild", "GrayDistillDataModule": "rgb"}
    if target != "SyntheticDataModule" and target not in roots:
        pytest.fail(f"tiny_data_overrides has no fixture for {cfg.data._target_}: add one")
    with open_dict(cfg):
        if target == "SyntheticDataModule":
            cfg.data.num_train, cfg.data.num_val, cfg.data.num_test = 40, 20, 20
        else:
            cfg.data.root = str(fixtures[roots[target]])
        cfg.data.batch_size = 8
        cfg.data.num_workers = 0
        if "image_size" in cfg.data:
            cfg.data.image_size = min(cfg.data.image_size, 64)
        if "arch" in cfg.model:
            cfg.model.arch = "resnet18"
        for key, value in list(cfg.model.items()):
            if value == "imagenet":  # tests never download: random weights
                cfg.model[key] = None
                if cfg.model.get("conv1_init") == "rgb_sum":
                    cfg.model.conv1_init = "random"
        if cfg.trainer.get("accelerator") == "gpu":  # GPU recipes run their code path on CPU
            cfg.trainer.accelerator = "cpu"


@pytest.fixture
def data_fixtures(fer_folder, tmp_path) -> dict[str, Path]:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    rgb = tmp_path / "rgb"
    wild = tmp_path / "wild"
    for i in range(12):
        (rgb / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(rgb / f"c{i % 3}" / f"{i}.jpg"), rng.integers(0, 256, (80, 96, 3), np.uint8))
    for name in ("angry", "disgust", "happy", "sad", "surprise"):
        (wild / name).mkdir(parents=True)
        for i in range(6):
            cv2.imwrite(str(wild / name / f"{i}.png"), rng.integers(0, 256, (64, 64), np.uint8))
    return {"fer": fer_folder, "rgb": rgb, "wild": wild}


@pytest.mark.parametrize("group", sorted(GROUP_OPTIONS))
def test_every_group_option_composes(group, tmp_path):
    assert GROUP_OPTIONS[group], f"conf/{group} is empty"
    for option in GROUP_OPTIONS[group]:
        cfg = compose_cfg("train", [f"{group}={option}"], tmp_path)
        # the option's own interpolations resolve (debug is global; the defaults of other
        # groups need not fit every option: data=gray_distill has no classes for a classifier)
        OmegaConf.to_container(cfg[group] if group in cfg else cfg, resolve=True)
        assert cfg.data._target_ and cfg.trainer._target_


def test_eval_config_composes(tmp_path):
    cfg = compose_cfg("eval", ["ckpt_path=x.ckpt", "data=synthetic"], tmp_path)
    assert cfg.split == "test" and cfg.ckpt_path == "x.ckpt"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_fast_dev_run_every_experiment(experiment, tmp_path, data_fixtures):
    cfg = compose_cfg("train", [f"experiment={experiment}", "debug=fdr"], tmp_path)
    tiny_data_overrides(cfg, data_fixtures)
    with open_dict(cfg):
        cfg.trainer.detect_anomaly = False
    metrics, _ = train(cfg)
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "config.yaml").is_file()
    assert any(k.startswith("test/") for k in metrics)


@pytest.mark.slow
def test_train_then_eval_reproduces_test_metrics(tmp_path):
    run = tmp_path / "run"
    cfg = compose_cfg("train", ["experiment=quickstart", "trainer.max_epochs=2",
                                "data.num_train=120", "data.num_val=40", "data.num_test=50",
                                "data.batch_size=20", "logger=many"], run)
    metrics, _ = train(cfg)
    written = json.loads((run / "metrics.json").read_text())
    assert Path(written["best_ckpt"]).is_absolute() and Path(written["best_ckpt"]).is_file()
    for key in ("val/acc", "val/acc_best", "test/acc", "test/balanced_acc", "test/macro_f1",
                "test/precision/sad", "test/recall/happy", "test/f1/angry"):
        assert key in written, key
    assert optimized_value(written, "val/acc") == written["val/acc"]
    with pytest.raises(KeyError, match="was not logged"):
        optimized_value(written, "val/nothing")
    assert (run / "test_confusion_matrix.png").is_file()
    assert list((run / "tensorboard").rglob("events.out.tfevents*"))
    import hashlib

    (wandb_run,) = (run / "wandb").glob("offline-run-*")
    run_id = "quickstart-" + hashlib.sha1(str(run.resolve()).encode()).hexdigest()[:12]
    assert wandb_run.name.endswith(run_id)  # stable: a resumed run continues the same W&B run
    assert list(wandb_run.glob("files/media/table/test/samples_*.table.json"))
    assert list(wandb_run.glob("files/media/images/test/confusion_matrix_*.png"))

    out = tmp_path / "eval"
    ecfg = compose_cfg("eval", [f"ckpt_path={written['best_ckpt']}", "data=synthetic",
                                "data.num_train=120", "data.num_val=40", "data.num_test=50"], out)
    result = evaluate(ecfg)
    assert result["acc"] == pytest.approx(written["test/acc"], abs=1e-6)
    assert result["macro_f1"] == pytest.approx(written["test/macro_f1"], abs=1e-6)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["confusion_matrix"]["classes"] == ["angry", "disgust", "happy", "sad", "surprise"]
    assert sum(map(sum, saved["confusion_matrix"]["matrix"])) == 50
    assert set(saved["per_class"]["sad"]) == {"precision", "recall", "f1", "support"}
    assert (out / "confusion_matrix.png").is_file()


def test_eval_rejects_missing_checkpoint(tmp_path):
    cfg = compose_cfg("eval", ["ckpt_path=/nonexistent.ckpt", "data=synthetic"], tmp_path)
    with pytest.raises(FileNotFoundError, match="nonexistent.ckpt"):
        evaluate(cfg)


@pytest.mark.slow
@requires_shared("fer2013")
def test_real_fer2013_smoke(tmp_path):
    cfg = compose_cfg("train", ["experiment=fer_stage1", f"data.root={SHARED_DATA / 'fer2013'}",
                                "trainer.max_epochs=1", "+trainer.limit_train_batches=3",
                                "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=2",
                                "data.batch_size=32"], tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    sizes = {k: len(v) for k, v in datamodule.datasets.items()}
    # five classes of Training (minus the held-out tenth and blank frames) and all of PublicTest
    assert 17_000 < sizes["train"] < 18_700 and 1_800 < sizes["val"] < 2_100
    assert sizes["test"] == 467 + 56 + 895 + 653 + 415 - 1  # one blank PublicTest frame
    metrics, objects = train(cfg)
    # two test batches of 32 real faces were scored, and the accuracy is the matrix's diagonal
    matrix = np.array(objects["model"].confusion_matrix("test"))
    assert matrix.sum() == 64 and matrix.shape == (5, 5)
    assert metrics["test/acc"] == pytest.approx(np.trace(matrix) / 64)

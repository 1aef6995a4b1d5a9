"""Cross-dataset evaluation: checkpoints x datasets in one command, each dataset restricted to
the classes it shares with the model; one table (markdown + CSV) and one figure."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from emotion_lightning.cli.cross_eval import cross_evaluate, data_config, dataset_classes
from emotion_lightning.evaluation import ClassSubset, restrict_classes
from emotion_lightning.models import load_model
from tests.conftest import compose_cfg, fer_images, one_torch_thread, tiny_checkpoint, write_fer_csv
from tests.dataset_fixtures import write_rafdb
from tests.helpers import wild_crops


@pytest.fixture
def data_dir(tmp_path):
    """FER2013 (seven classes, Training + PublicTest) and wild crops of happy and sad only."""
    root = tmp_path / "data"
    (root / "fer2013").mkdir(parents=True)
    images, labels = fer_images(8)
    usages = np.where(np.arange(len(labels)) % 4 == 0, "PublicTest", "Training")
    write_fer_csv(root / "fer2013" / "fer2013.csv", images, labels, usages)
    wild_crops(root / "processed", count=14, labels=("happy", "sad", "not_an_emotion"))
    write_rafdb(root / "rafdb" / "basic", per_label=4)
    return root


def test_a_model_restricted_to_shared_classes_renormalises(checkpoint):
    model = load_model(checkpoint)
    assert restrict_classes(model, model.class_names) is model
    subset = restrict_classes(model, ["sad", "happy", "fear"])  # fear: not the model's
    assert isinstance(subset, ClassSubset) and subset.class_names == ["happy", "sad"]
    x = torch.randn(3, 1, 48, 48)
    with torch.no_grad():
        full = model.predict_proba(x)
        part = subset.predict_proba(x)
    expected = full[:, [2, 3]] / full[:, [2, 3]].sum(dim=1, keepdim=True)
    torch.testing.assert_close(part, expected)
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        ClassSubset(model, ["happy"])


def test_cross_eval_writes_one_table_of_models_by_datasets(tmp_path, data_dir, checkpoint):
    second = tiny_checkpoint(checkpoint.parent.parent, seed=1)  # the session's base folder
    out = tmp_path / "cross"
    cfg = compose_cfg("cross_eval", [
        f"ckpt_path=[{checkpoint},{second}]", "ensemble=true", "datasets=[fer,wild,rafdb]",
        f"paths.data_dir={data_dir}", f"paths.cache_dir={tmp_path / 'cache'}",
        "data_overrides.wild=['data.num_workers=0','data.test_fraction=0.3']",
        "data_overrides.fer=['data.num_workers=0']", "data_overrides.rafdb=['data.num_workers=0']",
        "extras.print_config=false"], out)
    wild = data_config("wild", cfg)
    assert wild.root == str(data_dir / "processed") and wild.num_workers == 0
    assert dataset_classes(wild) == ["happy", "sad"]  # emotion-named folders only
    with open_dict(cfg):
        cfg.paths.cache_dir = "~/a cache/it's"  # the default starts with ~: quoted for Hydra
    assert data_config("fer", cfg).cache_dir == "~/a cache/it's"
    with open_dict(cfg):
        cfg.paths.cache_dir = str(tmp_path / "cache")
    with one_torch_thread():
        results = cross_evaluate(cfg)
    assert list(results) == ["tiny", "tiny_1", "ensemble"]
    for row in results.values():
        assert row["fer"]["classes"] == ["angry", "disgust", "happy", "sad", "surprise"]
        assert row["wild"]["classes"] == ["happy", "sad"]
        assert row["fer"]["num_samples"] == 10  # PublicTest of the five classes: 2 each
        assert row["rafdb"]["classes"] == row["fer"]["classes"]  # RAF-DB's seven hold the five
        assert row["rafdb"]["num_samples"] == 10  # its official test split: 2 of each
    with (out / "cross_dataset.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["dataset"]) for r in rows] == [
        (m, d) for m in ("tiny", "tiny_1", "ensemble") for d in ("fer", "wild", "rafdb")]
    table = (out / "cross_dataset.md").read_text()
    assert "| model | fer acc | fer bal. acc | fer macro F1 | wild acc |" in table
    assert "- wild: " in table and "classes happy sad" in table
    assert (out / "cross_dataset.png").stat().st_size > 1000
    saved = json.loads((out / "ensemble" / "wild" / "metrics.json").read_text())
    assert saved["acc"] == pytest.approx(results["ensemble"]["wild"]["acc"])
    assert results["tiny"]["fer"]["loss"] != results["ensemble"]["fer"]["loss"]


def test_a_dataset_missing_its_folder_is_named(tmp_path, checkpoint):
    cfg = compose_cfg("cross_eval", [f"ckpt_path={checkpoint}", "datasets=[wild]",
                                     f"paths.data_dir={tmp_path / 'nowhere'}"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"data\.root=.*nowhere/processed .*does not exist"):
        cross_evaluate(cfg)
    cfg = compose_cfg("cross_eval", [f"ckpt_path={checkpoint}", "ensemble=true"], tmp_path / "o")
    with pytest.raises(ValueError, match="at least two checkpoints"):
        cross_evaluate(cfg)

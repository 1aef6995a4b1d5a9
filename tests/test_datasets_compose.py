"""data=<name> of every official-layout reader composes, instantiates and runs fast_dev_run."""

from __future__ import annotations

from functools import partial

import pytest
from hydra.utils import instantiate
from omegaconf import open_dict

from emotion_lightning.cli.train import train
from tests import dataset_fixtures as fixtures
from tests.conftest import compose_cfg

#: data option -> (fixture writer, overrides choosing all its classes, overrides of a second
#: fast_dev_run)
CASES = {
    # enough faces per class for the default 5% validation hold-out
    "affectnet": (partial(fixtures.write_affectnet, train_per_label=20), ["class_set=affectnet8"], None),
    "rafdb": (fixtures.write_rafdb, ["class_set=rafdb7"], None),
    # ten subjects (the default ten folds), each showing all seven emotions
    "ckplus": (partial(fixtures.write_ckplus, subjects=10, sequences=7, frames=3),
               ["class_set=seven", "data.neutral_frames=1"],
               ["data.folds=3", "data.fold=2", "data.neutral_frames=1"]),
    "expw": (partial(fixtures.write_expw, photos=60), ["class_set=seven"], None),
    "ferplus": (fixtures.write_ferplus, ["class_set=ferplus8"], ["data.label_mode=probability"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_data_option_composes_and_instantiates(name, tmp_path):
    writer, all_classes, _ = CASES[name]
    root = writer(tmp_path / name)
    cfg = compose_cfg("train", [f"data={name}", *all_classes, f"data.root={root}"], tmp_path / "run")
    dm = instantiate(cfg.data)
    assert dm.class_names == list(cfg.classes)
    dm.setup("test")
    assert len(dm.datasets["test"]) > 0


@pytest.mark.parametrize("name, variant", [
    pytest.param(n, v, id=" ".join([n, *v])) for n in sorted(CASES)
    for v in ([], CASES[n][2]) if v is not None])
def test_fast_dev_run_on_each_dataset(name, variant, tmp_path):
    root = CASES[name][0](tmp_path / name)
    cfg = compose_cfg("train", ["experiment=quickstart", f"data={name}", "debug=fdr",
                                f"data.root={root}", "data.batch_size=4", "data.num_workers=0",
                                *variant], tmp_path / "run")
    assert cfg.data.root == str(root) and cfg.data._target_.endswith("DataModule")
    with open_dict(cfg):
        cfg.trainer.detect_anomaly = False
    metrics, _ = train(cfg)
    assert any(k.startswith("test/") for k in metrics)


@pytest.mark.parametrize("name", sorted(CASES))
def test_data_option_declares_the_loader_keys_of_data_fer(name, tmp_path):
    cfg = compose_cfg("train", [f"data={name}"], tmp_path)
    fer = compose_cfg("train", ["data=fer"], tmp_path)
    assert cfg.data.augmentation == fer.data.augmentation
    shared = ("image_size", "batch_size", "num_workers", "loader", "augment", "cache_dir")
    assert {k: cfg.data[k] for k in shared} == {k: fer.data[k] for k in shared}


@pytest.mark.parametrize("class_set, classes", [
    ("rafdb7", "emotion_lightning.data.rafdb:RAFDB_CLASSES"),
    ("affectnet8", "emotion_lightning.data.affectnet:AFFECTNET_CLASSES"),
    ("ferplus8", "emotion_lightning.data.ferplus:FERPLUS_CLASSES"),
])
def test_class_sets_are_each_datasets_classes_in_its_label_order(class_set, classes, tmp_path):
    from importlib import import_module

    module, name = classes.split(":")
    cfg = compose_cfg("train", [f"class_set={class_set}"], tmp_path)
    assert list(cfg.classes) == list(getattr(import_module(module), name))

"""data=<name> of every official-layout reader composes, instantiates and runs fast_dev_run."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate
from omegaconf import open_dict

from emotion_lightning.cli.train import train
from tests import dataset_fixtures as fixtures
from tests.conftest import compose_cfg

WRITERS = {"rafdb": fixtures.write_rafdb}
CLASS_SETS = {"rafdb": "rafdb7"}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_data_option_composes_and_instantiates(name, tmp_path):
    root = WRITERS[name](tmp_path / name)
    cfg = compose_cfg("train", [f"data={name}", f"class_set={CLASS_SETS[name]}",
                                f"data.root={root}"], tmp_path / "run")
    dm = instantiate(cfg.data)
    assert dm.class_names == list(cfg.classes)
    dm.setup("test")
    assert len(dm.datasets["test"]) > 0


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_fast_dev_run_on_each_dataset(name, tmp_path):
    root = WRITERS[name](tmp_path / name)
    cfg = compose_cfg("train", ["experiment=quickstart", f"data={name}", "debug=fdr",
                                f"data.root={root}", "data.batch_size=4", "data.num_workers=0"],
                      tmp_path / "run")
    assert cfg.data.root == str(root) and cfg.data._target_.endswith("DataModule")
    with open_dict(cfg):
        cfg.trainer.detect_anomaly = False
    metrics, _ = train(cfg)
    assert any(k.startswith("test/") for k in metrics)

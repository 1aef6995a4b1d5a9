"""A backbone defined outside the package trains by name (``model.arch=module:builder``)."""

from __future__ import annotations

import pytest
from torch import nn

from emotion_lightning.cli.train import train
from emotion_lightning.models import create_backbone
from emotion_lightning.models.loading import load_classifier
from tests.conftest import compose_cfg

OUTSIDE = '''
from torch import nn


def tiny_net(num_classes, conv1_init="random", weights=None):
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, num_classes))
'''


@pytest.fixture
def outside_package(tmp_path, monkeypatch) -> str:
    package = tmp_path / "site" / "my_lab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(OUTSIDE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return "my_lab.nets:tiny_net"


def test_outside_backbone_trains_fast_dev_run_and_its_checkpoint_reloads(outside_package,
                                                                         tmp_path):
    cfg = compose_cfg("train", ["experiment=quickstart", "debug=fdr",
                                f"model.arch={outside_package}"], tmp_path / "run")
    _, objects = train(cfg)
    model = objects["model"]
    assert isinstance(model.net, nn.Sequential) and model.net[-1].out_features == 5
    objects["trainer"].save_checkpoint(tmp_path / "tiny.ckpt")
    loaded = load_classifier(tmp_path / "tiny.ckpt")
    assert loaded.hparams.arch == outside_package and isinstance(loaded.net, nn.Sequential)


def test_outside_backbone_names_are_checked(outside_package):
    with pytest.raises(ValueError, match="cannot import 'no_such_lab.nets'.*PYTHONPATH"):
        create_backbone("no_such_lab.nets:tiny_net", 5)
    with pytest.raises(ValueError, match="my_lab.nets has no callable 'huge_net'"):
        create_backbone("my_lab.nets:huge_net", 5)
    with pytest.raises(ValueError, match="unknown backbone 'resnet7'.*module:builder"):
        create_backbone("resnet7", 5)

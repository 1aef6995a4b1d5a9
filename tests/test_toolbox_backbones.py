"""The 48-px backbones (models/fer_nets.py): shapes, resolution kept, weights files."""

from __future__ import annotations

import pytest
import torch

from emotion_lightning.models import EmotionClassifier, create_backbone, list_backbones


def test_the_48px_backbones_are_registered():
    assert {"vgg_fer", "resnet18_cifar"} <= set(list_backbones())


def test_vgg_fer_is_the_papers_network_at_40px():
    net = create_backbone("vgg_fer", 7).eval()
    stages = [m for m in net.features]
    assert len(stages) == 4
    assert [s[0].out_channels for s in stages] == [64, 128, 256, 512]
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.features.modules()) == 8
    assert [m.out_features for m in net.classifier if isinstance(m, torch.nn.Linear)] == [4096, 4096]
    x = torch.randn(2, 1, 40, 40)
    with torch.no_grad():
        features = net.features(x)
        assert features.shape == (2, 512, 2, 2)
        torch.testing.assert_close(net.pool(features), features)  # the paper's flatten at 40 px
        assert net(torch.randn(2, 1, 48, 48)).shape == (2, 7)


def test_resnet18_cifar_keeps_the_native_resolution():
    net = create_backbone("resnet18_cifar", 7).eval()
    assert net.conv1.in_channels == 1 and net.conv1.stride == (1, 1)
    seen = {}

    def record(module, inputs, output):
        seen["layer1"] = output.shape

    net.layer1.register_forward_hook(record)
    with torch.no_grad():
        assert net(torch.randn(1, 1, 48, 48)).shape == (1, 7)
    assert seen["layer1"][-2:] == (48, 48)


@pytest.mark.parametrize("arch", ["vgg_fer", "resnet18_cifar"])
def test_a_checkpoint_of_the_same_arch_is_the_next_stages_weights(arch, tmp_path):
    stage1 = EmotionClassifier(["angry", "happy", "sad"], arch=arch)
    path = tmp_path / "stage1.ckpt"
    torch.save({"state_dict": stage1.state_dict(), "hyper_parameters": dict(stage1.hparams)}, path)
    stage2 = EmotionClassifier(["happy", "sad"], arch=arch, weights=str(path))
    first = next(iter(stage2.net.parameters()))
    torch.testing.assert_close(first, next(iter(stage1.net.parameters())))
    assert stage2.net.fc.out_features == 2  # the head of another size starts new
    with pytest.raises(ValueError, match="no ImageNet weights"):
        create_backbone(arch, 3, weights="imagenet")
    with pytest.raises(ValueError, match="conv1_init=random"):
        create_backbone(arch, 3, conv1_init="rgb_sum", weights=str(path))
    other = "resnet18_cifar" if arch == "vgg_fer" else "vgg_fer"
    with pytest.raises(ValueError, match=f"does not fit {other}"):
        create_backbone(other, 3, weights=str(path))

"""Backbones made for FER's native 48-px gray faces (no ImageNet weights, no downsampling stem).

* ``vgg_fer``: the VGG variant of Khaireddin & Chen (arXiv:2105.03588): four stages of two
  3x3 conv-BN-ReLU and a 2x2 max-pool (64, 128, 256, 512 channels), then 4096-4096 fully
  connected layers with dropout. An adaptive 2x2 average pool before them makes any input
  size work (at the paper's 40-px crops it is the identity).
* ``resnet18_cifar``: ResNet-18 with the CIFAR stem (He et al.): a 3x3 stride-1 conv and no
  max-pool, so the first stage runs at 48x48 instead of 12x12.
"""

from __future__ import annotations

from torch import nn
from torchvision import models

from emotion_lightning.models.registry import register_backbone
from emotion_lightning.models.weights import NO_WEIGHTS, load_state_dict_file


class FerVGG(nn.Module):
    """Khaireddin & Chen's VGG: ``features`` (4 stages), ``pool``, ``classifier``, ``fc``."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (64, 128, 256, 512),
                 hidden: int = 4096, dropout: float = 0.2) -> None:
        super().__init__()
        stages, c_in = [], 1
        for width in widths:
            stages.append(nn.Sequential(
                nn.Conv2d(c_in, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                nn.MaxPool2d(2)))
            c_in = width
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * 4, hidden), nn.Dropout(dropout), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.Dropout(dropout), nn.ReLU(inplace=True))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc(self.classifier(self.pool(self.features(x))))

    def blocks(self) -> list[nn.Module]:
        """The units layer freezing counts (``unit=blocks``): each conv stage, the hidden fully
        connected layers, the head."""
        return [*self.features, self.classifier, self.fc]


def cifar_resnet(arch: str, num_classes: int) -> models.ResNet:
    """A torchvision ResNet with a 1-channel 3x3 stride-1 stem and no max-pool."""
    net = models.get_model(arch, weights=None, num_classes=num_classes)
    net.conv1 = nn.Conv2d(1, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def _with_weights(net: nn.Module, name: str, conv1_init: str, weights: str | None) -> nn.Module:
    """``net`` with a local weights file loaded (a head of another size stays new)."""
    if conv1_init != "random":
        raise ValueError(f"{name} has no RGB weights to adapt: use conv1_init=random")
    if weights in NO_WEIGHTS:
        return net
    if weights == "imagenet":
        raise ValueError(f"{name} has no ImageNet weights: use weights=null or a checkpoint "
                         f"of a {name} model")
    state = load_state_dict_file(weights)
    own = net.state_dict()
    state = {k: v for k, v in state.items()
             if not (k.startswith("fc.") and k in own and v.shape != own[k].shape)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"fc.weight", "fc.bias"}:
        raise ValueError(f"{weights} does not fit {name}: missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}; give a checkpoint trained with model.arch={name}")
    return net


@register_backbone("vgg_fer")
def vgg_fer(num_classes: int, conv1_init: str = "random", weights: str | None = None):
    return _with_weights(FerVGG(num_classes), "vgg_fer", conv1_init, weights)


@register_backbone("resnet18_cifar")
def resnet18_cifar(num_classes: int, conv1_init: str = "random", weights: str | None = None):
    return _with_weights(cifar_resnet("resnet18", num_classes), "resnet18_cifar", conv1_init,
                         weights)

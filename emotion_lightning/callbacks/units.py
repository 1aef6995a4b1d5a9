"""Splitting a network into ordered units (children, blocks or layers) for freezing."""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

UNITS = ("children", "blocks", "layers")


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def network_units(net: nn.Module, unit: str) -> list[nn.Module]:
    """The network's units in forward order.

    * ``children``: top-level modules (a ResNet has conv1, bn1, relu, maxpool, layer1-4,
      avgpool, fc: the original code's ``children()[:-3]`` froze all but layer4, avgpool, fc);
    * ``blocks``: the stem (conv1+bn1), every residual block, and the head (fc); a network
      with a ``blocks()`` method gives its own (:class:`~emotion_lightning.models.FerVGG`:
      its four conv stages, the hidden fully connected layers and the head);
    * ``layers``: parameterised leaf modules (convs, norms, linears) in registration order,
      the blog's "all but the last 11 layers".
    """
    if unit == "children":
        return list(net.children())
    if unit == "layers":
        return [m for m in net.modules() if not list(m.children()) and _has_params(m)]
    if unit == "blocks":
        if callable(getattr(net, "blocks", None)):
            return list(net.blocks())
        if isinstance(net, ResNet):
            stem = nn.ModuleList([net.conv1, net.bn1])
            blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
            return [stem, *blocks, net.fc]
        blocks = [m for m in net.modules() if isinstance(m, (BasicBlock, Bottleneck))
                  or type(m).__name__.endswith("Block")]
        if not blocks:
            raise ValueError(f"{type(net).__name__} has no residual blocks; use unit=children")
        return blocks
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")

"""Torchvision ResNets with a 1-channel conv1 (the recipe's "gray ResNet")."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torchvision import models

from emotion_lightning.models.registry import register_backbone
from emotion_lightning.models.weights import NO_WEIGHTS, resolve_pretrained

log = logging.getLogger(__name__)

CONV1_INITS = ("random", "rgb_sum")


def gray_conv1_from_rgb(rgb_conv: nn.Conv2d, init: str = "random") -> nn.Conv2d:
    """A 1-channel copy of an RGB conv: random (the recipe) or the sum of its RGB filters.

    ``rgb_sum`` is exact for inputs whose three normalised channels are equal.
    """
    if init not in CONV1_INITS:
        raise ValueError(f"conv1_init must be one of {CONV1_INITS}, got {init!r}")
    gray = nn.Conv2d(
        1,
        rgb_conv.out_channels,
        kernel_size=rgb_conv.kernel_size,
        stride=rgb_conv.stride,
        padding=rgb_conv.padding,
        dilation=rgb_conv.dilation,
        groups=rgb_conv.groups,
        bias=rgb_conv.bias is not None,
    ).to(rgb_conv.weight.device, rgb_conv.weight.dtype)
    if init == "rgb_sum":
        with torch.no_grad():
            gray.weight.copy_(rgb_conv.weight.sum(dim=1, keepdim=True))
            if rgb_conv.bias is not None:
                gray.bias.copy_(rgb_conv.bias)
    return gray


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], conv1_init: str) -> None:
    """Load ``state`` into a gray ResNet, adapting conv1 and skipping a mismatched head."""
    state = dict(state)
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.shape[1] == 3:
        rgb = nn.Conv2d(3, conv1.shape[0], 7, 2, 3, bias=False)
        rgb.weight.data.copy_(conv1)
        if conv1_init == "rgb_sum":
            state["conv1.weight"] = gray_conv1_from_rgb(rgb, "rgb_sum").weight.data
        else:
            del state["conv1.weight"]
    own = model.state_dict()
    for key in ("fc.weight", "fc.bias"):
        if key in state and state[key].shape != own[key].shape:
            del state[key]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"weights do not fit this architecture: unexpected keys {unexpected[:5]}")
    expected_missing = {"conv1.weight", "fc.weight", "fc.bias"}
    if set(missing) - expected_missing:
        raise ValueError(f"weights do not fit this architecture: missing keys {missing[:5]}")
    log.info("loaded pretrained weights (freshly initialised: %s)", sorted(missing) or "none")


def build_gray_resnet(
    arch: str = "resnet50",
    num_classes: int = 5,
    conv1_init: str = "random",
    weights: str | None = None,
) -> models.ResNet:
    """A torchvision ResNet taking 1-channel input.

    Args:
        arch: ``resnet18``, ``resnet34``, ``resnet50`` (any torchvision ResNet name works).
        num_classes: size of the new head.
        conv1_init: ``random`` (the recipe) or ``rgb_sum`` (sum of the pretrained RGB filters).
        weights: ``None``, ``"imagenet"`` (torchvision's, cached or downloaded) or a local file
            (a state dict, or a checkpoint from the Conv1Distiller or the classifier).
    """
    if conv1_init not in CONV1_INITS:
        raise ValueError(f"conv1_init must be one of {CONV1_INITS}, got {conv1_init!r}")
    if conv1_init == "rgb_sum" and weights in NO_WEIGHTS:
        raise ValueError("conv1_init=rgb_sum sums pretrained RGB filters: give weights too")
    model = models.get_model(arch, weights=None, num_classes=num_classes)
    if not isinstance(model, models.ResNet):
        raise ValueError(f"{arch} is not a torchvision ResNet")
    model.conv1 = gray_conv1_from_rgb(model.conv1, "random")
    state = resolve_pretrained(arch, weights)
    if state is not None:
        _load_into(model, state, conv1_init)
    return model


@register_backbone("resnet18")
def resnet18(num_classes: int, conv1_init: str = "random", weights: str | None = None) -> nn.Module:
    """torchvision's ResNet-18 with a 1-channel conv1 (:func:`build_gray_resnet`)."""
    return build_gray_resnet("resnet18", num_classes, conv1_init, weights)


@register_backbone("resnet34")
def resnet34(num_classes: int, conv1_init: str = "random", weights: str | None = None) -> nn.Module:
    """torchvision's ResNet-34 with a 1-channel conv1 (:func:`build_gray_resnet`)."""
    return build_gray_resnet("resnet34", num_classes, conv1_init, weights)


@register_backbone("resnet50")
def resnet50(num_classes: int, conv1_init: str = "random", weights: str | None = None) -> nn.Module:
    """torchvision's ResNet-50 with a 1-channel conv1 (:func:`build_gray_resnet`)."""
    return build_gray_resnet("resnet50", num_classes, conv1_init, weights)

"""One registry of gray backbones: ``create_backbone(name, ...)`` builds any of them.

A researcher adds a backbone with::

    from emotion_lightning.models.registry import register_backbone

    @register_backbone("my_net")
    def my_net(num_classes: int, conv1_init: str, weights: str | None) -> nn.Module: ...

and selects it with ``model.arch=my_net``; every test parametrised over
``list_backbones()`` then covers it too.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

BackboneBuilder = Callable[..., nn.Module]
_REGISTRY: dict[str, BackboneBuilder] = {}


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator that registers ``builder(num_classes, conv1_init, weights) -> nn.Module``."""

    def decorator(builder: BackboneBuilder) -> BackboneBuilder:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    return sorted(_REGISTRY)


def create_backbone(
    name: str, num_classes: int, conv1_init: str = "random", weights: str | None = None
) -> nn.Module:
    """Build a registered 1-channel backbone with a ``num_classes`` head."""
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; registered: {', '.join(list_backbones())}. "
            "Register your own with emotion_lightning.models.register_backbone."
        ) from None
    return builder(num_classes=num_classes, conv1_init=conv1_init, weights=weights)

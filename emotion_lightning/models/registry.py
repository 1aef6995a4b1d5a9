"""One registry of gray backbones: ``create_backbone(name, ...)`` builds any of them.

A researcher adds a backbone with::

    from emotion_lightning.models.registry import register_backbone

    @register_backbone("my_net")
    def my_net(num_classes: int, conv1_init: str, weights: str | None) -> nn.Module: ...

and selects it with ``model.arch=my_net``; every test parametrised over
``list_backbones()`` then covers it too. A builder in your own package needs no import
hook: ``model.arch=my_pkg.backbones:my_net`` imports ``my_pkg.backbones`` and calls its
``my_net`` (checkpoints record that name, so loading them imports it again).
"""

from __future__ import annotations

import importlib
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


def unregister_backbone(name: str) -> BackboneBuilder:
    """Remove ``name`` from the registry (e.g. a test's or a notebook's experiment); returns
    its builder."""
    if name not in _REGISTRY:
        raise KeyError(f"backbone {name!r} is not registered; registered: {list_backbones()}")
    return _REGISTRY.pop(name)


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone`, sorted."""
    return sorted(_REGISTRY)


def create_backbone(
    name: str, num_classes: int, conv1_init: str = "random", weights: str | None = None
) -> nn.Module:
    """Build a 1-channel backbone with a ``num_classes`` head: a registered ``name``, or
    ``"module:builder"`` for a builder defined outside this package."""
    builder = _external_builder(name) if ":" in name else _REGISTRY.get(name)
    if builder is None:
        raise ValueError(
            f"unknown backbone {name!r}; registered: {', '.join(list_backbones())}. "
            "Register your own with emotion_lightning.models.register_backbone, or name it "
            "as module:builder (model.arch=my_pkg.backbones:my_net)."
        )
    return builder(num_classes=num_classes, conv1_init=conv1_init, weights=weights)


def _external_builder(name: str) -> BackboneBuilder:
    """The callable ``attr`` of ``module`` for ``name="module:attr"``, importing the module."""
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"backbone {name!r}: cannot import {module_name!r} ({err}); install "
                         "your package or add its folder to PYTHONPATH") from None
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ValueError(f"backbone {name!r}: {module_name} has no callable {attr!r}")
    return builder

"""Backbones (one registry) and LightningModules.

Names are imported on first use; importing the package registers the built-in backbones.
"""

from importlib import import_module

from emotion_lightning.models.fer_nets import FerVGG, cifar_resnet
from emotion_lightning.models.gray_resnet import build_gray_resnet, gray_conv1_from_rgb
from emotion_lightning.models.registry import (
    create_backbone,
    list_backbones,
    register_backbone,
    unregister_backbone,
)

_LAZY = {"EmotionClassifier": "classifier", "Conv1Distiller": "gray_distill",
         "ClassifierEnsemble": "ensemble", "load_classifier": "loading", "load_model": "loading"}
__all__ = [
    "ClassifierEnsemble",
    "Conv1Distiller",
    "EmotionClassifier",
    "FerVGG",
    "build_gray_resnet",
    "cifar_resnet",
    "create_backbone",
    "gray_conv1_from_rgb",
    "list_backbones",
    "load_classifier",
    "load_model",
    "register_backbone",
    "unregister_backbone",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

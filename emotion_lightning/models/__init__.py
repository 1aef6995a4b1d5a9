"""Backbones and LightningModules."""

from emotion_lightning.models.classifier import EmotionClassifier
from emotion_lightning.models.gray_resnet import build_gray_resnet, gray_conv1_from_rgb
from emotion_lightning.models.registry import create_backbone, list_backbones, register_backbone

__all__ = [
    "EmotionClassifier",
    "build_gray_resnet",
    "create_backbone",
    "gray_conv1_from_rgb",
    "list_backbones",
    "register_backbone",
]

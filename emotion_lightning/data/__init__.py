"""LightningDataModules, datasets, splits and transform presets."""

from emotion_lightning.data.base import ArrayDataset, GrayImageDataModule, select_classes
from emotion_lightning.data.fer import FERDataModule
from emotion_lightning.data.synthetic import SyntheticDataModule
from emotion_lightning.data.wild import WildDataModule

__all__ = [
    "ArrayDataset",
    "FERDataModule",
    "GrayImageDataModule",
    "SyntheticDataModule",
    "WildDataModule",
    "select_classes",
]

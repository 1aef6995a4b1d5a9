"""LightningDataModules, datasets, splits and transform presets.

Names are imported on first use, so light modules (``presets``, ``splits``) load without
pulling in Lightning.
"""

from importlib import import_module

_EXPORTS = {
    "ArrayDataset": "base",
    "GrayImageDataModule": "base",
    "select_classes": "base",
    "BatchAugment": "batch_augment",
    "DeviceBatches": "device_loader",
    "ShardSampler": "device_loader",
    "FERDataModule": "fer",
    "SyntheticDataModule": "synthetic",
    "WildDataModule": "wild",
    "GrayDistillDataModule": "gray_distill",
    "RAFDBDataModule": "rafdb",
    "FERPlusDataModule": "ferplus",
    "AffectNetDataModule": "affectnet",
    "CKPlusDataModule": "ckplus",
    "ExpWDataModule": "expw",
    "MultiDataModule": "multi",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

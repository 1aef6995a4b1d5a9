"""Bad inputs of the wild (class-folder) reader: unreadable, truncated, blank and unsupported
files are skipped and reported by name."""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from emotion_lightning.data import WildDataModule
from tests.helpers import truncated_jpeg, wild_crops


def test_wild_set_skips_and_reports_truncated_blank_and_unsupported_files(tmp_path, caplog):
    root = wild_crops(tmp_path / "crops")
    cut = truncated_jpeg(root / "happy" / "cut.jpg", size=60)
    # RGBA whose colour channels are empty and fully opaque: black for cv2, blank after decoding
    Image.fromarray(np.dstack([np.zeros((60, 60, 3), np.uint8),
                               np.full((60, 60), 255, np.uint8)])).save(root / "sad" / "rgba.png")
    Image.new("L", (60, 60), 90).save(root / "sad" / "anim.gif")
    with caplog.at_level(logging.WARNING, "emotion_lightning.data.wild"):
        dm = WildDataModule(root, classes=["happy", "sad"], cache_dir=None, test_fraction=0.0)
        dm.setup()
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == 24
    assert f"skipped {cut}: truncated or corrupt" in caplog.text
    assert f"skipped {root / 'sad' / 'rgba.png'}: blank image" in caplog.text
    assert "unsupported types" in caplog.text and "anim.gif" in caplog.text
    for split in ("train", "val"):
        assert (dm.datasets[split].images.reshape(len(dm.datasets[split]), -1).std(1) > 0).all()

"""Labelled face sets as class folders: ``root/<emotion>/**/<image>``."""

from __future__ import annotations

import logging
from pathlib import Path

from emotion_lightning.constants import canonical_emotion
from emotion_lightning.images import STILL_IMAGE_SUFFIXES

log = logging.getLogger(__name__)

#: Where ``emotion-faces review`` writes its pages inside a crop set: not a class folder.
REVIEW_DIR = "review"


def list_class_folders(root: Path) -> list[tuple[str, str]]:
    """(relative path, canonical label) of every image under ``root/<label>/``, sorted."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"wild data root {root} does not exist; expected <root>/<emotion>/*.png face crops "
            "(emotion-faces build writes them) or pass detect_faces=true for raw photos"
        )
    entries = []
    ignored: list[Path] = []
    for folder in sorted(p for p in root.iterdir()
                         if p.is_dir() and not p.name.startswith(".") and p.name != REVIEW_DIR):
        label = canonical_emotion(folder.name)
        for file in sorted(folder.rglob("*")):
            if file.suffix.lower() in STILL_IMAGE_SUFFIXES and file.is_file():
                entries.append((file.relative_to(root).as_posix(), label))
            elif file.is_file() and not file.name.startswith(".") and file.suffix != ".tmp":
                ignored.append(file)
    if ignored:
        log.warning("skipped %d file(s) of unsupported types (not %s) in the class folders of "
                    "%s, e.g. %s", len(ignored), "/".join(sorted(STILL_IMAGE_SUFFIXES)), root,
                    ignored[0])
    if not entries:
        raise FileNotFoundError(f"no images in {root}/<emotion>/ folders")
    return entries

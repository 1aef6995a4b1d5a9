"""Labelled face sets as class folders: ``root/<emotion>/**/<image>``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from emotion_lightning.constants import canonical_emotion
from emotion_lightning.images import STILL_IMAGE_SUFFIXES

log = logging.getLogger(__name__)

#: Where ``emotion-faces review`` writes its pages inside a crop set: not a class folder.
REVIEW_DIR = "review"


def class_folder_files(root: Path, classes: Sequence[str] | None = None) -> list[tuple[Path, str]]:
    """(path, canonical label) of every file or link under ``root/<label>/``, sorted: hidden
    files and folders and the ``review`` folder are left out; ``classes`` limits the labels."""
    wanted = {canonical_emotion(c) for c in classes} if classes else None
    found = []
    for folder in sorted(p for p in root.iterdir()
                         if p.is_dir() and not p.name.startswith(".") and p.name != REVIEW_DIR):
        label = canonical_emotion(folder.name)
        if wanted is not None and label not in wanted:
            continue
        for path in sorted(folder.rglob("*")):
            hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
            if (path.is_file() or path.is_symlink()) and not hidden:
                found.append((path, label))
    return found


def list_class_folders(root: Path) -> list[tuple[str, str]]:
    """(relative path, canonical label) of every image under ``root/<label>/``, sorted."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"wild data root {root} does not exist; expected <root>/<emotion>/*.png face crops "
            "(emotion-faces build writes them) or pass detect_faces=true for raw photos"
        )
    entries = []
    ignored: list[Path] = []
    for file, label in class_folder_files(root):
        if file.suffix.lower() in STILL_IMAGE_SUFFIXES and file.is_file():
            entries.append((file.relative_to(root).as_posix(), label))
        elif file.is_file() and file.suffix != ".tmp":
            ignored.append(file)
    if ignored:
        log.warning("skipped %d file(s) of unsupported types (not %s) in the class folders of "
                    "%s, e.g. %s", len(ignored), "/".join(sorted(STILL_IMAGE_SUFFIXES)), root,
                    ignored[0])
    if not entries:
        raise FileNotFoundError(f"no images in {root}/<emotion>/ folders")
    return entries

"""Exclusion lists: crops a reviewer rejected, one path relative to the dataset per line.

Datasets honour ``<out_dir>/exclude.txt``; files are never deleted, so a wrong
exclusion is undone by deleting its line. Blank lines and ``#`` comments are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

EXCLUDE_NAME = "exclude.txt"


def normalize_entry(entry: str, where: str = "exclusion") -> str:
    """``label/name.png`` form of one entry; rejects absolute paths and ``..``."""
    path = PurePosixPath(entry.strip().replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(
            f"{where}: {entry.strip()!r} must be a path relative to the dataset folder, "
            "like happy/abc_1234.png"
        )
    return path.as_posix()


def read_exclusions(path: str | Path) -> set[str]:
    """Relative paths listed in the exclusion file at ``path``; an absent file excludes nothing."""
    path = Path(path)
    if not path.exists():
        return set()
    entries = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            entries.add(normalize_entry(line, f"{path}:{number}"))
    return entries


def add_exclusions(path: str | Path, entries: Iterable[str]) -> int:
    """Append the ``entries`` not yet in the exclusion file at ``path``; return how many."""
    path = Path(path)
    known = read_exclusions(path)
    new = []
    for entry in entries:
        if entry.strip() and not entry.lstrip().startswith("#"):
            normalized = normalize_entry(entry)
            if normalized not in known:
                known.add(normalized)
                new.append(normalized)
    if new:
        existing = path.read_text(encoding="utf-8") if path.exists() else ""
        separator = "" if not existing or existing.endswith("\n") else "\n"
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(existing + separator + "".join(f"{e}\n" for e in new), encoding="utf-8")
        os.replace(partial, path)
    return len(new)

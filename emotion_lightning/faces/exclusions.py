"""Exclusion lists: crops a reviewer rejected, one path relative to the dataset per line.

Datasets honour ``<out_dir>/exclude.txt``; files are never deleted, so a wrong
exclusion is undone by deleting its line. Blank lines and ``#`` comments are ignored.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from emotion_lightning.textfiles import read_text

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
    for number, line in enumerate(read_text(path).splitlines(), start=1):
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
        existing = read_text(path) if path.exists() else ""
        separator = "" if not existing or existing.endswith("\n") else "\n"
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(existing + separator + "".join(f"{e}\n" for e in new), encoding="utf-8")
        os.replace(partial, path)
    return len(new)


@dataclass
class MergedList:
    """What :func:`merge_exclusion_list` did: entries added, and entries matching no crop
    (with a crop of the same name in another case, when there is one)."""

    added: int = 0
    unmatched: list[str] = field(default_factory=list)
    hints: dict[str, str] = field(default_factory=dict)

    def describe(self, shown: int = 3) -> str:
        """One line for the unmatched entries ('' when every entry matched a crop)."""
        if not self.unmatched:
            return ""
        examples = ", ".join(
            repr(e) + (f" (did you mean {self.hints[e]!r}?)" if e in self.hints else "")
            for e in self.unmatched[:shown])
        more = f" and {len(self.unmatched) - shown} more" if len(self.unmatched) > shown else ""
        return (f"{len(self.unmatched)} entr{'y' if len(self.unmatched) == 1 else 'ies'} match "
                f"no crop and were not added: {examples}{more}")


def merge_exclusion_list(exclude_file: str | Path, listing: str | Path,
                         crops: Collection[str]) -> MergedList:
    """Add the entries of the downloaded list ``listing`` that name one of ``crops`` (the
    data set's ``label/file`` paths) to ``exclude_file``; the others (typos, crops since
    deleted, another case) would exclude nothing, so they are returned, not added."""
    listing = Path(listing)
    if not listing.is_file():
        raise FileNotFoundError(f"exclusion list {listing} does not exist")
    by_lower = {crop.lower(): crop for crop in crops}
    merged = MergedList()
    wanted = []
    for number, line in enumerate(read_text(listing).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        entry = normalize_entry(line, f"{listing}:{number}")
        if entry in crops:
            wanted.append(entry)
            continue
        merged.unmatched.append(entry)
        if entry.lower() in by_lower:
            merged.hints[entry] = by_lower[entry.lower()]
    merged.added = add_exclusions(exclude_file, wanted)
    return merged

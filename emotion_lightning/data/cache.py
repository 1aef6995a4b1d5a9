"""A decoded-image cache: uint8 arrays on disk, built once, memory-mapped by every reader."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

CACHE_VERSION = 1


def fingerprint(parts: Iterable[object]) -> str:
    """A short hex key over the given parts (paths, sizes, mtimes, settings)."""
    h = hashlib.sha256(f"v{CACHE_VERSION}".encode())
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def file_fingerprint(paths: Iterable[Path], root: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of each file: changes when any file changes."""
    out = []
    for path in paths:
        st = path.stat()
        out.append((path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    return out


def cached_arrays(
    cache_dir: str | os.PathLike | None,
    key: str,
    build: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Arrays stored under ``cache_dir/key``; ``build()`` runs only when they are missing.

    Writes go to a temporary folder renamed into place, so an interrupted build leaves
    no half-written cache and concurrent builders do not corrupt each other. Arrays are
    opened memory-mapped, so DataLoader workers share the pages instead of copying them.
    ``cache_dir=None`` disables caching.
    """
    if cache_dir is None:
        return build()
    root = Path(cache_dir).expanduser()
    target = root / key
    if not (target / "meta.json").is_file():
        arrays = build()
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        try:
            for name, array in arrays.items():
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
            (tmp / "meta.json").write_text(json.dumps({"arrays": sorted(arrays)}))
            try:
                tmp.rename(target)
            except OSError:  # another process finished first: keep theirs
                if not (target / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    names = json.loads((target / "meta.json").read_text())["arrays"]
    return {name: np.load(target / f"{name}.npy", mmap_mode="r") for name in names}

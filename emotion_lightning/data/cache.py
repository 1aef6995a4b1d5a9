"""A decoded-image cache: uint8 arrays on disk, built once, memory-mapped by every reader."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

CACHE_VERSION = 1
#: Where datamodules cache decoded images unless told (the configs: ``paths.cache_dir``,
#: which ``EMOTION_CACHE`` overrides).
DEFAULT_CACHE_DIR = "~/.cache/emotion-lightning"
log = logging.getLogger(__name__)


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


class CacheFolderError(OSError):
    """The cache folder cannot be written: it names the folder and how to choose another."""


def _unwritable(root: Path, error: OSError) -> CacheFolderError:
    return CacheFolderError(
        error.errno,
        f"cannot write the decoded-image cache in {root} ({error.strerror or error}): free "
        "space there or choose another folder with EMOTION_CACHE=/some/folder or "
        "paths.cache_dir=/some/folder (cache_dir=None in Python turns the cache off)",
    )


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}


def _entry_problem(target: Path, key: str) -> str | None:
    """Why the cache entry at ``target`` cannot be used (None: it is whole).

    Checks that ``meta.json`` names ``key`` (entries of older versions name none) and every
    array it lists, and that each array's file is exactly as long as its header says (a copy
    cut off by a full disk, a crash or a partial sync is shorter).
    """
    try:
        meta = json.loads((target / "meta.json").read_text())
        if meta.get("key", key) != key:
            return f"meta.json is for key {meta['key']}"
        for name in meta["arrays"]:
            path = target / f"{name}.npy"
            with path.open("rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = _HEADER_READERS.get(version)
                if read_header is None:
                    return f"{path.name}: .npy format {version} is not one this cache writes"
                shape, _, dtype = read_header(f)
                expected = f.tell() + int(np.prod(shape)) * dtype.itemsize
            size = path.stat().st_size
            if size != expected:
                return f"{path.name} holds {size} bytes, its header needs {expected}"
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def cached_arrays(
    cache_dir: str | os.PathLike | None,
    key: str,
    build: Callable[[], dict[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Arrays stored under ``cache_dir/key``; ``build()`` runs only when they are missing.

    Writes go to a temporary folder renamed into place, so an interrupted build leaves
    no half-written cache and concurrent builders do not corrupt each other. Arrays are
    opened memory-mapped, so DataLoader workers share the pages instead of copying them.
    An entry found damaged (truncated or unreadable) is logged, removed and rebuilt. A
    cache folder that cannot be written fails naming it (:class:`CacheFolderError`).
    ``cache_dir=None`` disables caching.
    """
    if cache_dir is None:
        return build()
    root = Path(cache_dir).expanduser()
    target = root / key
    if (target / "meta.json").is_file():
        problem = _entry_problem(target, key)
        if problem is not None:
            log.warning("cache entry %s is damaged (%s): rebuilding it", target, problem)
            _discard(target, root)
    if not (target / "meta.json").is_file():
        arrays = build()
        _store(root, key, arrays)
    names = json.loads((target / "meta.json").read_text())["arrays"]
    return {name: np.load(target / f"{name}.npy", mmap_mode="r") for name in names}


def _discard(target: Path, root: Path) -> None:
    """Move a damaged entry out of the way (readers holding its maps keep them) and delete it."""
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}-damaged-", dir=root))
    try:
        target.rename(aside / "entry")
    except FileNotFoundError:  # another process got there first
        pass
    except OSError as error:
        raise _unwritable(root, error) from error
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _store(root: Path, key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as the entry ``root/key`` through a temporary folder renamed into place."""
    target = root / key
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    except OSError as error:
        raise _unwritable(root, error) from error
    try:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps({"key": key, "arrays": sorted(arrays)}))
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: keep theirs
            if not (target / "meta.json").is_file():
                raise
    except OSError as error:
        raise _unwritable(root, error) from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

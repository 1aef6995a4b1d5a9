"""JSON records (``metrics.json``, benchmark results): written whole or not at all."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("emotion_lightning")


def write_json(data: dict, path: str | Path) -> Path:
    """Write ``data`` as indented, key-sorted JSON to ``path`` through a temporary file
    renamed into place, so a crash or a full disk never leaves a cut-off record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True)
    handle, partial = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    log.info("wrote %s", path)
    return path

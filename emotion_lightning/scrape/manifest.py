"""The scrape's records in the raw directory: which file came from where, which queries are done.

``manifest.csv`` has one row per kept file (``status=kept``) plus one row each time a
kept image turned up again under another label (``status=also_labelled``: ``file`` is
the kept file, ``label`` the other label). ``queries.csv`` lists finished queries, so
a re-run skips them. Both files are only ever appended to.
"""

from __future__ import annotations

import csv
import threading
from collections import defaultdict
from pathlib import Path

MANIFEST_NAME = "manifest.csv"
QUERIES_NAME = "queries.csv"

MANIFEST_COLUMNS: tuple[str, ...] = (
    "file",  # relative to the raw directory: <label>/<sha256 prefix>.<ext>
    "label",
    "engine",
    "query",
    "url",
    "sha256",
    "phash",  # hex
    "status",  # kept | also_labelled
)
QUERY_COLUMNS: tuple[str, ...] = ("engine", "label", "query", "kept")


class ScrapeManifest:
    """Thread-safe, append-only access to ``manifest.csv`` and ``queries.csv`` in ``raw_dir``."""

    def __init__(self, raw_dir: str | Path) -> None:
        self.raw_dir = Path(raw_dir)
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.raw_dir / MANIFEST_NAME
        self.queries_path = self.raw_dir / QUERIES_NAME
        self._lock = threading.Lock()

    def rows(self) -> list[dict[str, str]]:
        return _read_csv(self.path)

    def append(self, row: dict[str, str]) -> None:
        with self._lock:
            _append_csv(self.path, MANIFEST_COLUMNS, row)

    def finished_queries(self) -> set[tuple[str, str, str]]:
        """``(engine, label, query)`` of every finished query."""
        return {(r["engine"], r["label"], r["query"]) for r in _read_csv(self.queries_path)}

    def mark_finished(self, engine: str, label: str, query: str, kept: int) -> None:
        with self._lock:
            row = {"engine": engine, "label": label, "query": query, "kept": str(kept)}
            _append_csv(self.queries_path, QUERY_COLUMNS, row)

    def kept_count(self, engine: str, label: str, query: str) -> int:
        """Files already kept by a query (an interrupted query resumes with the rest of its cap)."""
        return sum(
            1
            for r in self.rows()
            if r["status"] == "kept"
            and (r["engine"], r["label"], r["query"]) == (engine, label, query)
        )


def source_info(raw_dir: str | Path) -> dict[str, tuple[str, str]]:
    """``file -> (url, flags)`` from a raw directory's manifest; empty without one.

    ``flags`` is ``"also_labelled:<label>;..."`` for files found under other labels too.
    """
    urls: dict[str, str] = {}
    others: dict[str, set[str]] = defaultdict(set)
    for row in _read_csv(Path(raw_dir) / MANIFEST_NAME):
        if row["status"] == "kept":
            urls[row["file"]] = row["url"]
        else:
            others[row["file"]].add(row["label"])
    return {
        file: (
            urls.get(file, ""),
            ";".join(f"also_labelled:{label}" for label in sorted(others[file])),
        )
        for file in set(urls) | set(others)
    }


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _append_csv(path: Path, columns: tuple[str, ...], row: dict[str, str]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow({column: row.get(column, "") for column in columns})

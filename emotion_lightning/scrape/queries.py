"""Search queries per emotion and how many images each may bring in."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from emotion_lightning.constants import canonical_emotion


@dataclass(frozen=True)
class Query:
    """One search: ``text`` typed into the engine, images filed under ``label``, at most ``cap``.

    ``cap=0`` means no limit (used for URL lists).
    """

    label: str
    text: str
    cap: int


def plan_queries(
    presets: Mapping[str, Sequence[str | Mapping[str, object]]],
    classes: Sequence[str],
    main_cap: int,
    synonym_cap: int,
    max_per_query: int | None = None,
) -> list[Query]:
    """The queries of ``classes`` from ``presets`` (label -> list of query entries).

    An entry is the query text or ``{query: text, cap: n}``. The first entry of a label is
    its main word and gets ``main_cap``, the others ``synonym_cap``, unless the entry names
    its own cap. ``max_per_query`` (when set) overrides every cap.
    """
    known = {canonical_emotion(label): entries for label, entries in presets.items()}
    queries = []
    for name in classes:
        label = canonical_emotion(name)
        if label not in known:
            raise ValueError(
                f"no queries for class {name!r}; the query preset has {', '.join(sorted(known))}. "
                "Add a list for it to the preset (conf/query_plan/) or drop it from classes."
            )
        for position, entry in enumerate(known[label]):
            text, cap = _parse_entry(entry, label, main_cap if position == 0 else synonym_cap)
            queries.append(Query(label, text, max_per_query if max_per_query else cap))
    return queries


def _parse_entry(
    entry: str | Mapping[str, object], label: str, default_cap: int
) -> tuple[str, int]:
    if isinstance(entry, str):
        text, cap = entry, default_cap
    elif isinstance(entry, Mapping) and set(entry) <= {"query", "cap"} and "query" in entry:
        text, cap = str(entry["query"]), int(entry.get("cap", default_cap))  # type: ignore[arg-type]
    else:
        raise ValueError(
            f"query entry {entry!r} of {label!r} must be a string or {{query: ..., cap: ...}}"
        )
    if not text.strip() or cap < 1:
        raise ValueError(
            f"query entry {entry!r} of {label!r} needs a non-empty query and a cap >= 1"
        )
    return text.strip(), cap


def read_url_list(path: str | Path) -> list[str]:
    """http(s) URLs from a ``.txt`` (one per line, ``#`` comments) or ``.csv`` (a ``url`` column)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"URL list {path} does not exist")
    with path.open(newline="", encoding="utf-8") as handle:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(handle)
            if "url" not in (reader.fieldnames or []):
                raise ValueError(f"URL list {path} needs a 'url' column, found {reader.fieldnames}")
            lines = [row["url"] or "" for row in reader]
        else:
            lines = [line for line in handle if not line.lstrip().startswith("#")]
    urls = [
        line.strip() for line in lines if line.strip().lower().startswith(("http://", "https://"))
    ]
    if not urls:
        raise ValueError(f"URL list {path} has no http(s) URLs")
    return urls

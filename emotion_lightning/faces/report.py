"""The face-build report: one CSV row per raw image, appended as the build goes.

The report is the build's memory: a source with a row is finished and never processed
again, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

REPORT_NAME = "report.csv"
log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "source",  # raw image, relative to the raw directory
    "label",
    "status",  # kept | dropped
    "reason",  # why dropped: one of REASONS, or detector_error (empty when kept)
    "detail",  # human-readable detail: decoder error, duplicate of what
    "crop",  # kept crop, relative to the output directory
    "faces",  # confident faces in the photo
    "prob",  # probability of the face the decision is about
    "left",  # that face's box in the original (EXIF-upright) image's pixels
    "top",
    "right",
    "bottom",
    "width",  # original image size
    "height",
    "sha256",  # of the source file's bytes
    "phash",  # of the crop, hex
    "url",  # where the scraper found the source (from raw/manifest.csv)
    "flags",  # e.g. "also_labelled:sad" when the scraper found it under other labels
    "crop_style",  # box, landmarks, or "box (why the landmarks were not used)"
)
#: Columns that reports written before they existed lack (read as empty).
LATER_COLUMNS: tuple[str, ...] = ("crop_style",)

#: Reasons for dropping an image, in the order the summary lists them.
REASONS: tuple[str, ...] = (
    "unreadable",
    "duplicate",
    "no_face",
    "low_probability",
    "several_faces",
    "too_small",
)


def read_report(path: str | Path) -> list[dict[str, str]]:
    """Rows of a report CSV; an absent report has none.

    A row with missing or extra fields (e.g. cut off by a crash mid-write) is left out
    with a warning, so its photo counts as not processed and is processed again.
    """
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        rows = []
        for row in reader:
            if None in row or any(row.get(column) is None for column in COLUMNS
                                  if column not in LATER_COLUMNS):
                log.warning("%s:%d: damaged row left out (its photo will be processed again)",
                            path, reader.line_num)
                continue
            rows.append({column: "" for column in LATER_COLUMNS} | row)
        return rows


def repair_report(path: str | Path) -> int:
    """Cut off a last row that was not completely written (power loss, kill -9 mid-write).

    Rows are written whole and flushed one by one, so only the last line can be partial:
    without its final newline. It is removed (logged), so that the next rows start on a
    fresh line and its photo is processed again. Returns the number of bytes removed.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1  # 0: even the header was cut off
    partial = data[keep:].decode("utf-8", errors="replace")
    log.warning("%s: the last row was cut off mid-write (%r); it is removed and its photo "
                "will be processed again", path, partial[:80])
    with path.open("r+b") as handle:
        handle.truncate(keep)
    return len(data) - keep


class ReportWriter:
    """Appends rows to a report CSV, flushing each so that a crash loses nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            _add_later_columns(self.path)
        self._handle = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=COLUMNS, extrasaction="raise")
        if new:
            self._writer.writeheader()

    def write(self, row: dict[str, object]) -> None:
        self._writer.writerow({column: row.get(column, "") for column in COLUMNS})
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ReportWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _add_later_columns(path: Path) -> None:
    """Rewrite (atomically) a report written before :data:`LATER_COLUMNS` with all columns."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    if tuple(header) == COLUMNS:
        return
    rows = read_report(path)
    partial = path.with_name(path.name + ".tmp")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def summarize_build(rows: Iterable[dict[str, str]]) -> str:
    """A plain-text table of kept and dropped images per label and reason."""
    counts: Counter[tuple[str, str]] = Counter()
    for row in rows:
        counts[row["label"], "kept" if row["status"] == "kept" else row["reason"]] += 1
    labels = sorted({label for label, _ in counts})
    columns = ["kept", *REASONS]
    columns += sorted({column for _, column in counts} - set(columns))
    table = [[label, *(counts[label, column] for column in columns)] for label in labels]
    table.append(["total", *(sum(counts[label, column] for label in labels) for column in columns)])
    first = max(len(str(line[0])) for line in [["label"], *table])
    widths = [max(len(column), 6) for column in columns]
    header = [f"{'label':<{first}}", *(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))]
    lines = [" ".join(header)]
    for name, *cells in table:
        lines.append(
            " ".join(
                [f"{name:<{first}}", *(f"{n:>{w}}" for n, w in zip(cells, widths, strict=True))]
            )
        )
    return "\n".join(lines)

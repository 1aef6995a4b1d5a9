"""Reading FER2013 from either release format into uint8 arrays.

* the Kaggle CSV ``emotion,pixels,Usage`` (48x48 = 2304 space-separated values per row);
* the folder layout ``{train,test}/<emotion>/*.{jpg,png}``, where the split comes from the
  file-name prefix (``Training_``, ``PublicTest_``, ``PrivateTest_``) when present and
  otherwise from the folder name.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from emotion_lightning.constants import FER_EMOTIONS, canonical_emotion
from emotion_lightning.data.cache import cached_arrays, file_fingerprint, fingerprint
from emotion_lightning.images import (
    FER_SIZE,
    STILL_IMAGE_SUFFIXES,
    UnreadableImage,
    load_gray,
    not_a_file,
    resize_square,
)
from emotion_lightning.textfiles import TextEncodingError, open_text

log = logging.getLogger(__name__)

USAGES = ("Training", "PublicTest", "PrivateTest")
FOLDER_USAGE = {
    "train": "Training",
    "training": "Training",
    "test": "PublicTest",
    "publictest": "PublicTest",
    "val": "PublicTest",
    "valid": "PublicTest",
    "validation": "PublicTest",
    "privatetest": "PrivateTest",
}
HOW_TO_GET = (
    "Expected either a Kaggle CSV (fer2013.csv with columns emotion,pixels,Usage) or the "
    "folder layout <root>/{train,test}/<emotion>/*.jpg. FER2013 is available from the Kaggle "
    "challenge 'challenges-in-representation-learning-facial-expression-recognition-challenge' "
    "or its 'msambare/fer2013' folder release; download it and pass data.root=<folder or csv>."
)


@dataclass(frozen=True)
class FERTable:
    """All images of a FER2013 source: uint8 ``[N, 48, 48]``, FER label indices, usages."""

    images: np.ndarray
    labels: np.ndarray
    usages: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


class FERFormatError(ValueError):
    """A FER2013 file that does not follow the expected format."""


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return text.isascii()


def _csv_rows(path: Path):
    """(line number, row) of the CSV at ``path`` in its encoding (an Excel BOM is dropped);
    a broken quote or a non-text byte raises FERFormatError naming the file and line."""
    with open_text(path) as f:
        reader = csv.reader(f)
        line_no = 1  # where the next row starts
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as error:
                raise FERFormatError(
                    f"{path}:{line_no}: {error} (a quote opened here and never closed?); fix "
                    "or remove that row"
                ) from None
            except TextEncodingError as error:
                raise FERFormatError(f"{error} (near line {line_no})") from None
            yield line_no, row
            line_no = reader.line_num + 1


def read_fer_csv(path: str | Path) -> FERTable:
    """Parse the Kaggle CSV; a malformed row raises FERFormatError naming file and line."""
    path = Path(path)
    images, labels, usages = [], [], []
    rows = _csv_rows(path)
    header = [h.strip() for h in next(rows, (1, []))[1]]
    if header[:2] != ["emotion", "pixels"]:
        raise FERFormatError(
            f"{path}:1: header is {header!r}, expected 'emotion,pixels[,Usage]'"
        )
    has_usage = len(header) > 2 and header[2] == "Usage"
    for line_no, row in tqdm(rows, desc=f"reading {path.name}", unit=" rows"):
        if not row:
            continue
        where = f"{path}:{line_no}"
        if len(row) < 2:
            raise FERFormatError(f"{where}: expected emotion,pixels[,Usage], got {row!r}")
        try:
            label = int(row[0])
        except ValueError:
            raise FERFormatError(f"{where}: emotion {row[0]!r} is not an integer 0-6") from None
        if not 0 <= label < len(FER_EMOTIONS):
            raise FERFormatError(f"{where}: emotion {label} is outside 0-6 {FER_EMOTIONS}")
        values = row[1].split()
        bad = next((v for v in values if not _is_integer(v)), None)
        if bad is not None:
            raise FERFormatError(f"{where}: pixel value {bad!r} is not an integer 0-255")
        pixels = np.array(values, dtype=np.int64)
        if pixels.size != FER_SIZE * FER_SIZE:
            raise FERFormatError(
                f"{where}: {pixels.size} pixel values, expected {FER_SIZE * FER_SIZE} (48x48)"
            )
        if pixels.min() < 0 or pixels.max() > 255:
            raise FERFormatError(f"{where}: pixel values must lie in 0-255")
        usage = row[2].strip() if has_usage and len(row) > 2 else "Training"
        if usage not in USAGES:
            raise FERFormatError(f"{where}: Usage {usage!r} is not one of {USAGES}")
        images.append(pixels.astype(np.uint8).reshape(FER_SIZE, FER_SIZE))
        labels.append(label)
        usages.append(usage)
    if not images:
        raise FERFormatError(f"{path}: no data rows")
    return FERTable(np.stack(images), np.asarray(labels, np.int64), np.asarray(usages))


def list_fer_folder(root: str | Path) -> list[tuple[Path, int, str]]:
    """(path, FER label, usage) for every image of the folder layout, sorted by path."""
    root = Path(root)
    entries = []
    ignored: list[Path] = []
    broken: list[str] = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        folder_usage = FOLDER_USAGE.get(split_dir.name.lower())
        if folder_usage is None:
            continue
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            emotion = canonical_emotion(class_dir.name)
            if emotion not in FER_EMOTIONS:
                raise FERFormatError(
                    f"{class_dir}: folder name {class_dir.name!r} is not a FER emotion "
                    f"{FER_EMOTIONS}; rename or remove it"
                )
            label = FER_EMOTIONS.index(emotion)
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in STILL_IMAGE_SUFFIXES:
                    if file.is_file() and not file.name.startswith("."):
                        ignored.append(file)
                    continue
                problem = not_a_file(file)
                if problem:
                    broken.append(f"{file} ({problem})")
                    continue
                prefix = file.name.split("_", 1)[0]
                usage = prefix if prefix in USAGES else folder_usage
                entries.append((file, label, usage))
    if ignored:
        log.warning("skipped %d file(s) of unsupported types (not %s) in the class folders of "
                    "%s, e.g. %s", len(ignored), "/".join(sorted(STILL_IMAGE_SUFFIXES)), root,
                    ignored[0])
    if broken:
        log.warning("skipped %d image name(s) that are not readable files under %s: %s%s",
                    len(broken), root, "; ".join(broken[:5]), " ..." if len(broken) > 5 else "")
    return entries


def load_fer_image(path: Path) -> np.ndarray:
    """A 48x48 uint8 gray image from a file; unreadable (also truncated) files raise naming it."""
    try:
        image = load_gray(path)
    except UnreadableImage as error:
        raise FERFormatError(
            f"{path}: not a readable image ({error.reason}); delete the file or replace it "
            "with a complete copy (re-download or re-extract the data set)"
        ) from None
    return resize_square(image, FER_SIZE)


def read_fer_folder(root: str | Path, entries: list[tuple[Path, int, str]]) -> FERTable:
    """Decode every listed image (with a progress bar)."""
    images = np.empty((len(entries), FER_SIZE, FER_SIZE), dtype=np.uint8)
    for i, (file, _, _) in enumerate(tqdm(entries, desc=f"decoding {root}", unit=" img")):
        images[i] = load_fer_image(file)
    labels = np.asarray([label for _, label, _ in entries], dtype=np.int64)
    usages = np.asarray([usage for _, _, usage in entries])
    return FERTable(images, labels, usages)


def _is_kaggle_csv(path: Path) -> bool:
    """True when the file starts with the Kaggle header (other CSVs, e.g. manifests, are not data)."""
    try:
        header = [h.strip() for h in next(_csv_rows(path), (1, []))[1]]
    except FERFormatError:
        return False
    return header[:2] == ["emotion", "pixels"]


def load_fer(root: str | Path, cache_dir: str | Path | None = None) -> FERTable:
    """All of FER2013 at ``root`` (a CSV file, a folder holding one, or the folder layout).

    Decoded images are cached under ``cache_dir`` keyed by the source files' fingerprint,
    so later runs (and every DataLoader worker) skip CSV/JPEG parsing entirely.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"FER2013 root {root} does not exist. {HOW_TO_GET}")
    csv_file = root if root.is_file() else next(
        (p for p in sorted(root.glob("*.csv")) if _is_kaggle_csv(p)), None)
    if csv_file is not None:
        key = fingerprint(["fer-csv", *file_fingerprint([csv_file], csv_file.parent)])
        arrays = cached_arrays(cache_dir, key, lambda: vars(read_fer_csv(csv_file)))
        return FERTable(arrays["images"], arrays["labels"], arrays["usages"])
    entries = list_fer_folder(root)
    if not entries:
        raise FileNotFoundError(f"no FER2013 images under {root}. {HOW_TO_GET}")
    key = fingerprint(["fer-folder", *file_fingerprint([e[0] for e in entries], root),
                       *[(e[1], e[2]) for e in entries]])
    arrays = cached_arrays(cache_dir, key, lambda: vars(read_fer_folder(root, entries)))
    return FERTable(arrays["images"], arrays["labels"], arrays["usages"])

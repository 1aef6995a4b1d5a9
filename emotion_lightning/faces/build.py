"""Raw scraped photos -> one gray, square, FER-sized face crop per photo, with a report.

``raw_dir/<label>/**`` images are decoded (any mode, EXIF-upright, huge ones
downscaled), searched for faces in batches, filtered by the face policy, cropped and
written to ``out_dir/<label>/<name>.png``. Every source gets one row in
``out_dir/report.csv``; sources with a row are never processed again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from emotion_lightning.constants import canonical_emotion
from emotion_lightning.faces.class_folders import class_folder_files
from emotion_lightning.faces.cropper import FaceCrop
from emotion_lightning.faces.detector import Detections, FaceDetector
from emotion_lightning.faces.policy import POLICIES, choose_face
from emotion_lightning.faces.report import REPORT_NAME, ReportWriter, read_report, repair_report
from emotion_lightning.images import (
    DecodedImage,
    UnreadableImage,
    decode_image,
    not_a_file,
)
from emotion_lightning.scrape.dedup import DuplicateIndex, phash, sha256_hex
from emotion_lightning.scrape.manifest import source_info

#: Held while a build writes into an out_dir.
LOCK_NAME = ".build.lock"


@dataclass(frozen=True)
class Source:
    """A raw image: its path relative to the raw directory and its (canonical) label."""

    relpath: str
    label: str


def find_sources(raw_dir: str | Path, classes: Sequence[str] | None = None) -> list[Source]:
    """Every file under ``raw_dir/<label>/`` (:func:`class_folder_files`: hidden files
    skipped), sorted; links that are not files (dangling, loops, to a folder) are sources
    too, so they get a report row.

    ``classes`` limits the labels; folder names are mapped to canonical emotion names.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"raw_dir {raw_dir} does not exist; run emotion-scrape first")
    sources = [Source(path.relative_to(raw_dir).as_posix(), label)
               for path, label in class_folder_files(raw_dir, classes)]
    if not sources:
        raise ValueError(
            f"no images in {raw_dir}/<label>/ folders"
            + (f" for classes {sorted(canonical_emotion(c) for c in classes)}" if classes else "")
        )
    return sources


def unprocessed_sources(
    raw_dir: str | Path, report: Iterable[dict[str, str]], classes: Sequence[str] | None = None
) -> list[Source]:
    """The sources of :func:`find_sources` without a row in ``report`` (the build's rows)."""
    done = {row["source"] for row in report}
    return [source for source in find_sources(raw_dir, classes) if source.relpath not in done]


def crop_name(relpath: str) -> str:
    """A safe, unique, deterministic PNG name for the crop of ``relpath``."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(relpath).stem).strip("_")[:60] or "image"
    return f"{stem}_{hashlib.sha256(relpath.encode()).hexdigest()[:8]}.png"


class FaceDatasetBuilder:
    """Builds (or resumes) a face-crop dataset from a raw photo directory.

    Args:
        detector: the face detector; its ``min_prob`` decides which faces are confident.
        policy: ``exactly_one`` (drop photos with several confident faces) or ``largest``.
        min_face_px: drop faces whose longer side is smaller (in the decoded photo).
        crop: how the kept face is cut (default :class:`FaceCrop`: 48 px, by its landmarks:
            eyes level, FER framing, measured better than the box for stage 2); faces with
            implausible landmarks keep the box crop, and the report's ``crop_style`` says
            which and why.
        max_side: decode larger photos downscaled to this longer side (detection and crops
            use that copy).
        chunk_size: photos decoded and detected together.
        near_duplicate_distance: pHash bits within which two crops are the same face photo.
    """

    def __init__(
        self,
        detector: FaceDetector,
        policy: str = "exactly_one",
        min_face_px: int = 40,
        crop: FaceCrop | None = None,
        max_side: int = 1024,
        chunk_size: int = 64,
        near_duplicate_distance: int = 3,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown face policy {policy!r}; choose one of {', '.join(POLICIES)}")
        if max_side < detector.min_face_size:
            raise ValueError(f"max_side {max_side} is below the detector's min_face_size")
        self.detector = detector
        self.policy = policy
        self.min_face_px = min_face_px
        self.crop = crop or FaceCrop()
        self.max_side = max_side
        self.chunk_size = chunk_size
        self.near_duplicate_distance = near_duplicate_distance

    def build(
        self,
        raw_dir: str | Path,
        out_dir: str | Path,
        classes: Sequence[str] | None = None,
        progress: bool = True,
    ) -> list[dict[str, str]]:
        """Process every source without a report row; return all report rows."""
        raw_dir, out_dir = Path(raw_dir), Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with _only_build(out_dir):
            return self._build(raw_dir, out_dir, classes, progress)

    def _build(self, raw_dir: Path, out_dir: Path, classes: Sequence[str] | None,
               progress: bool) -> list[dict[str, str]]:
        report_path = out_dir / REPORT_NAME
        repair_report(report_path)
        previous = read_report(report_path)
        self._check_same_style(previous, out_dir)
        pending = unprocessed_sources(raw_dir, previous, classes)
        index = DuplicateIndex(self.near_duplicate_distance)
        for row in previous:
            if row["status"] == "kept":
                index.add(row["crop"], row["label"], row["sha256"], int(row["phash"], 16))
        info = source_info(raw_dir)
        with (
            ReportWriter(report_path) as report,
            tqdm(total=len(pending), desc="faces", unit="img", disable=not progress) as bar,
        ):
            for start in range(0, len(pending), self.chunk_size):
                chunk = pending[start : start + self.chunk_size]
                for row in self._process(chunk, raw_dir, out_dir, index):
                    url, flags = info.get(row["source"], ("", ""))
                    report.write({**row, "url": url, "flags": flags})
                bar.update(len(chunk))
        return read_report(report_path)

    def _check_same_style(self, rows: list[dict[str, str]], out_dir: Path) -> None:
        """Refuse to resume a build whose crops were cut the other way (box vs landmarks)."""
        for row in rows:
            align = self.crop.align
            if row["status"] == "kept" and _is_aligned(row.get("crop_style", "")) != align:
                raise ValueError(
                    f"{out_dir} holds crops cut {'by box' if align else 'by landmarks'} "
                    f"(e.g. {row['crop']}) but face_crop.align={align}: build into a new "
                    f"out_dir, or pass face_crop.align={not align} to resume it"
                )

    def _process(
        self, chunk: list[Source], raw_dir: Path, out_dir: Path, index: DuplicateIndex
    ) -> list[dict[str, str]]:
        """Report rows of one chunk of sources (crops written as a side effect)."""
        rows: list[dict[str, str]] = []
        decoded: list[tuple[Source, str, DecodedImage]] = []
        for source in chunk:
            base = {"source": source.relpath, "label": source.label}
            try:
                problem = not_a_file(raw_dir / source.relpath)
                if problem:
                    rows.append(_dropped(base, "unreadable", problem))
                    continue
                data = (raw_dir / source.relpath).read_bytes()
                sha = sha256_hex(data)
                earlier = index.find(sha)
                if earlier is not None:
                    rows.append(_dropped(base, "duplicate", f"same file as {earlier.key}", sha=sha))
                    continue
                decoded.append((source, sha, decode_image(data, source.relpath, self.max_side)))
            except UnreadableImage as error:
                rows.append(_dropped(base, "unreadable", error.reason))
            except Exception as error:  # anything a hostile file triggers must not stop the run
                rows.append(_dropped(base, "unreadable", f"{type(error).__name__}: {error}"))
        for (source, sha, image), faces in zip(decoded, self._detect(decoded), strict=True):
            if isinstance(faces, Exception):
                detail = f"{type(faces).__name__}: {faces}"
                rows.append(
                    _dropped(
                        {"source": source.relpath, "label": source.label}, "detector_error", detail
                    )
                )
            else:
                rows.append(self._decide(source, sha, image, faces, out_dir, index))
        return rows

    def _detect(
        self, decoded: list[tuple[Source, str, DecodedImage]]
    ) -> list[Detections | Exception]:
        """Faces in each photo, batched; if the batch fails, photo by photo, keeping the errors."""
        images = [image.rgb for _, _, image in decoded]
        try:
            return list(self.detector.detect_all(images))
        except Exception:
            found: list[Detections | Exception] = []
            for image in images:
                try:
                    found.append(self.detector.detect_all([image])[0])
                except Exception as error:  # one odd photo must not stop the run
                    found.append(error)
            return found

    def _decide(
        self,
        source: Source,
        sha: str,
        image: DecodedImage,
        faces: Detections,
        out_dir: Path,
        index: DuplicateIndex,
    ) -> dict[str, str]:
        """Apply the face policy to one decoded photo; write its crop when kept."""
        choice = choose_face(faces, self.policy, self.detector.min_prob, self.min_face_px)
        row = {
            "source": source.relpath,
            "label": source.label,
            "faces": str(choice.faces),
            "width": str(image.width),
            "height": str(image.height),
            "sha256": sha,
        }
        if choice.index is not None:
            box = faces.boxes[choice.index] / image.scale
            row["prob"] = f"{faces.probs[choice.index]:.4f}"
            row.update(
                {
                    k: f"{v:.1f}"
                    for k, v in zip(("left", "top", "right", "bottom"), box, strict=True)
                }
            )
        if not choice.kept:
            return _dropped(row, choice.reason, "")
        box, landmarks = faces.boxes[choice.index], faces.landmarks[choice.index]
        crop, row["crop_style"] = self.crop.cut(image.rgb, box, landmarks)
        crop_hash = phash(crop)
        relpath = f"{source.label}/{crop_name(source.relpath)}"
        earlier = index.claim(relpath, source.label, sha, crop_hash)
        if earlier is not None:
            what = "same file" if earlier.exact else f"same face photo ({earlier.distance} bits)"
            return _dropped(row, "duplicate", f"{what} as {earlier.key}")
        _write_png(out_dir / relpath, crop)
        return {**row, "status": "kept", "crop": relpath, "phash": f"{crop_hash:016x}"}


@contextlib.contextmanager
def _only_build(out_dir: Path):
    """Hold ``out_dir/.build.lock`` (an OS lock, released when the process ends, however it
    ends): a second build on the same ``out_dir`` fails at once instead of writing every row
    twice."""
    lock_path = out_dir / LOCK_NAME
    with lock_path.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RuntimeError(
                f"{out_dir} is being built by {holder}: wait for it to finish (rerunning then "
                "resumes), or build into another out_dir"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"process {os.getpid()}")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _is_aligned(crop_style: str) -> bool:
    """Whether a report row's crop comes from an aligned build (its fallbacks included)."""
    return crop_style.startswith(("landmarks", "box ("))


def _dropped(row: dict[str, str], reason: str, detail: str, **extra: str) -> dict[str, str]:
    return {**row, **extra, "status": "dropped", "reason": reason, "detail": detail}


def _write_png(path: Path, gray: np.ndarray) -> None:
    """Write atomically: a crash leaves a ``.tmp`` file, never a half-written PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    Image.fromarray(gray).save(partial, format="PNG")
    os.replace(partial, path)

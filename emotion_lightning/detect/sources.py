"""What to annotate: images, folders, globs, videos and webcams, and reading their frames."""

from __future__ import annotations

import glob
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emotion_lightning.images import IMAGE_SUFFIXES

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
)
#: Image suffixes OpenCV writes; annotated copies of other images are written as PNG.
WRITABLE_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
DEFAULT_FPS = 25.0


@dataclass(frozen=True)
class Media:
    """One input: an image file, a video file or a webcam, and its annotated output's name."""

    kind: str  # "image", "video" or "webcam"
    location: str  # the file path, or the webcam index
    output_name: Path  # relative to the output directory

    @property
    def source(self) -> str:
        """How the input is named in the detections table."""
        return f"webcam:{self.location}" if self.kind == "webcam" else self.location


@dataclass(frozen=True)
class Skipped:
    """An input that was not annotated, and why."""

    source: str
    reason: str


@dataclass(frozen=True)
class Frame:
    """One RGB frame of a video or webcam; ``timestamp`` in seconds from the start."""

    index: int
    timestamp: float
    rgb: np.ndarray


class UnreadableVideo(ValueError):
    """A video file or webcam that cannot be opened."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def collect_media(
    inputs: str | int | Sequence[str | int], exclude: str | Path | None = None
) -> tuple[list[Media], list[Skipped]]:
    """Expand files, folders (recursively), globs and webcam indices into :class:`Media`.

    Files under ``exclude`` (the output directory) are left out, so a second run never
    annotates the first run's output. Missing paths, unknown file types, empty folders and
    globs that match nothing are returned as :class:`Skipped`.
    """
    items = [inputs] if isinstance(inputs, (str, int, Path)) else list(inputs)
    exclude = Path(exclude).resolve() if exclude is not None else None
    media: list[Media] = []
    skipped: list[Skipped] = []
    taken: set[Path] = set()
    for item in items:
        found, problem = _expand(str(item), exclude)
        if problem:
            skipped.append(Skipped(str(item), problem))
        for kind, location, name in found:
            media.append(Media(kind, location, _unique(_output_name(kind, name), taken)))
    return media, skipped


def _expand(item: str, exclude: Path | None) -> tuple[list[tuple[str, str, Path]], str | None]:
    """(kind, location, relative name) of each medium ``item`` names, or why there are none."""
    path = Path(item).expanduser()
    if item.isdigit() and not path.exists():
        return [("webcam", item, Path(f"webcam_{item}"))], None
    if path.is_file():
        kind = _kind(path)
        if kind is None:
            return [], f"unknown file type {path.suffix!r}; {_known()}"
        return [(kind, str(path), Path(path.name))], None
    if path.is_dir():
        files, base = sorted(p for p in path.rglob("*") if p.is_file()), path
        empty = f"no images or videos in this folder; {_known()}"
    elif _has_wildcard(item):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        base = _glob_base(path)
        empty = f"the pattern matches no images or videos; {_known()}"
    else:
        return [], "no such file, folder or webcam index"
    found = [
        (kind, str(p), p.relative_to(base))
        for p in files
        if (kind := _kind(p)) and not _is_under(p, exclude) and not _hidden(p.relative_to(base))
    ]
    return found, None if found else empty


def _has_wildcard(text: str) -> bool:
    return any(c in text for c in "*?[")


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _known() -> str:
    return f"images: {' '.join(sorted(IMAGE_SUFFIXES))}; videos: {' '.join(sorted(VIDEO_SUFFIXES))}"


def _glob_base(pattern: Path) -> Path:
    """The folder part of ``pattern`` before its first wildcard."""
    parts = []
    for part in pattern.parts[:-1]:
        if _has_wildcard(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _is_under(path: Path, folder: Path | None) -> bool:
    return folder is not None and path.resolve().is_relative_to(folder)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _output_name(kind: str, name: Path) -> Path:
    """Annotated images keep their format where OpenCV writes it; videos become MP4."""
    if kind == "image":
        return name if name.suffix.lower() in WRITABLE_IMAGE_SUFFIXES else name.with_suffix(".png")
    return name.with_suffix(".mp4")


def _unique(name: Path, taken: set[Path]) -> Path:
    """``name``, or ``name_2``, ``name_3`` ... when an earlier input took it."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = name.with_name(f"{name.stem}_{n}{name.suffix}")
    taken.add(candidate)
    return candidate


class VideoReader:
    """RGB frames of a video file or webcam, with its frame rate and announced length."""

    def __init__(self, media: Media) -> None:
        target = int(media.location) if media.kind == "webcam" else media.location
        self.capture = cv2.VideoCapture(target)
        if not self.capture.isOpened():
            what = "webcam" if media.kind == "webcam" else "video (missing codec or not a video?)"
            raise UnreadableVideo(media.source, f"cannot open this {what}")
        self.live = media.kind == "webcam"
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps_known = math.isfinite(fps) and fps > 0
        self.fps = fps if self.fps_known else DEFAULT_FPS
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 and not self.live else None

    def frames(self, max_frames: int | None = None) -> Iterator[Frame]:
        """Frames in order until the stream ends (or fails), at most ``max_frames``."""
        index = 0
        while max_frames is None or index < max_frames:
            ok, bgr = self.capture.read()
            if not ok:
                return
            yield Frame(index, index / self.fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1

    def close(self) -> None:
        self.capture.release()

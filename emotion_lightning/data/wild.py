"""WildDataModule: labelled face crops in class folders (a processed scrape, or any such set)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from emotion_lightning.constants import DEFAULT_CLASSES
from emotion_lightning.data.base import GrayImageDataModule, LoaderOptions, select_classes
from emotion_lightning.data.cache import (
    DEFAULT_CACHE_DIR,
    cached_arrays,
    file_fingerprint,
    fingerprint,
)
from emotion_lightning.data.splits import check_fractions, random_split
from emotion_lightning.faces.class_folders import list_class_folders
from emotion_lightning.faces.cropper import FaceCrop
from emotion_lightning.faces.detector import FaceDetector
from emotion_lightning.images import (
    UnreadableImage,
    load_gray,
    resize_square,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

log = logging.getLogger(__name__)


def decode_crops(root: Path, relpaths: Sequence[str], size: int) -> dict[str, np.ndarray]:
    """Gray ``size x size`` uint8 ``images`` and which were ``readable``.

    Unreadable files (empty, corrupt, truncated) and blank ones (a single value, e.g. an
    RGBA image with nothing but alpha) are skipped: each is logged naming the file, and
    its ``readable`` entry is False (its image all zero).
    """
    out = np.zeros((len(relpaths), size, size), np.uint8)
    readable = np.ones(len(relpaths), bool)
    for i, rel in enumerate(tqdm(relpaths, desc=f"decoding {root}", unit=" img")):
        try:
            image = load_gray(root / rel)
        except UnreadableImage as error:
            log.warning("skipped %s: %s; exclude, delete or replace it", root / rel, error.reason)
            readable[i] = False
            continue
        if image.min() == image.max():
            log.warning("skipped %s: blank image (every pixel %d; e.g. RGBA with empty colour "
                        "channels); exclude, delete or replace it", root / rel, image.min())
            readable[i] = False
            continue
        out[i] = resize_square(image, size)
    if not readable.all():
        log.warning("skipped %d unreadable or blank image(s) of %d under %s",
                    (~readable).sum(), len(relpaths), root)
    return {"images": out, "readable": readable}


class WildDataModule(GrayImageDataModule):
    """Face crops in ``root/<emotion>/`` with a seeded, stratified, duplicate-safe split.

    Args:
        root: ``emotion-faces build`` output, or any folder of cropped class folders.
        classes: ordered class subset; folder names are mapped to canonical emotion names.
        train_fraction: share of train (the recipe: 0.7); the rest is validation and test.
        test_fraction: held-out test share (default 0.15: 70/15/15), so stage 2 never selects
            and reports on the same images; 0 makes the test split the val split (the recipe).
        exclude_file: exclusion list (``label/file`` per line, written by the review page);
            default ``root/exclude.txt`` when it exists. Excluded files are skipped, not deleted.
        detect_faces: ``root`` holds raw photos: :meth:`prepare_data` detects and crops their
            faces (FER framing) into the cache, as ``emotion-faces build`` does.
        face_policy: which faces of a photo are kept when ``detect_faces`` (see
            :data:`~emotion_lightning.faces.policy.POLICIES`).
        face_detector: finds the faces when ``detect_faces`` (default: MTCNN on the CPU,
            :class:`~emotion_lightning.faces.FaceDetector`).
        face_crop: how they are cut when ``detect_faces`` (default: 48 px, by the landmarks,
            as ``emotion-faces build``); crops already cut (``detect_faces=false``) are read
            as they are.
        cache_dir: decoded crops (and detected faces) are cached here; ``None`` disables.
        loader: ``image_size``, ``batch_size``, ``num_workers``, ``augment``, ``augmentation``,
            ``pin_memory``: see :class:`GrayImageDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] = DEFAULT_CLASSES,
        train_fraction: float = 0.7,
        test_fraction: float = 0.15,
        seed: int = 42,
        exclude_file: str | Path | None = None,
        detect_faces: bool = False,
        face_policy: str = "exactly_one",
        face_detector: FaceDetector | None = None,
        face_crop: FaceCrop | None = None,
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
        **loader: Unpack[LoaderOptions],
    ) -> None:
        super().__init__(classes, **loader)
        check_fractions(train_fraction, test_fraction)
        self.root = Path(root).expanduser()
        self.train_fraction = train_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.exclude_file = exclude_file
        self.detect_faces = detect_faces
        self.face_policy = face_policy
        self.face_detector = face_detector
        self.face_crop = face_crop or FaceCrop()
        self.cache_dir = cache_dir

    def prepare_data(self) -> None:
        """With ``detect_faces``: crop the faces of the raw photos not cropped yet.

        Lightning calls this on one process per node before any :meth:`setup`, so the face
        detector never runs on every DDP process at once.
        """
        if not self.detect_faces:
            return
        from emotion_lightning.faces.build import FaceDatasetBuilder

        builder = FaceDatasetBuilder(self._detector(), self.face_policy, crop=self.face_crop)
        builder.build(self.root, self._crop_root(), classes=self.class_names)

    def _crop_root(self) -> Path:
        """The folder of crops: ``root`` itself, or the cache folder of the detected faces."""
        if not self.detect_faces:
            return self.root
        if self.cache_dir is None:
            raise ValueError("detect_faces needs a cache_dir to write the crops to")
        detector, crop = self._detector(), self.face_crop
        key = fingerprint(["wild-faces", str(self.root.resolve()), self.face_policy,
                           detector.min_prob, detector.min_face_size, detector.max_side,
                           crop.size, crop.margin, "aligned" if crop.align else "box"])
        return Path(self.cache_dir).expanduser() / f"faces-{key}"

    def _detector(self) -> FaceDetector:
        if self.face_detector is None:
            self.face_detector = FaceDetector()
        return self.face_detector

    def _require_detected_faces(self, crop_root: Path) -> None:
        """Fail, saying what to run, unless every raw photo has been through face detection."""
        from emotion_lightning.faces.build import unprocessed_sources
        from emotion_lightning.faces.report import REPORT_NAME, read_report

        report = read_report(crop_root / REPORT_NAME)
        pending = unprocessed_sources(self.root, report, self.class_names)
        if pending:
            raise FileNotFoundError(
                f"detect_faces=true: {len(pending)} photo(s) under {self.root} (e.g. "
                f"{pending[0].relpath}) have not been through face detection; call "
                "prepare_data() before setup() (a Lightning Trainer does), or run `emotion-faces "
                f"build raw_dir={self.root} out_dir=DIR` and use root=DIR, detect_faces=false"
            )

    def _excluded(self, crop_root: Path) -> set[str]:
        from emotion_lightning.faces.exclusions import EXCLUDE_NAME, read_exclusions

        path = Path(self.exclude_file) if self.exclude_file else crop_root / EXCLUDE_NAME
        if self.exclude_file and not path.is_file():
            raise FileNotFoundError(f"exclude_file {path} does not exist")
        return read_exclusions(path)

    def load_splits(self, stage: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        crop_root = self._crop_root()
        if self.detect_faces:
            self._require_detected_faces(crop_root)
        excluded = self._excluded(crop_root)
        entries = [(rel, label) for rel, label in list_class_folders(crop_root)
                   if rel not in excluded]
        if excluded:
            log.info("excluded %d listed files", len(excluded))
        relpaths = [rel for rel, _ in entries]
        names = sorted({label for _, label in entries})
        labels = np.asarray([names.index(label) for _, label in entries], dtype=np.int64)
        key = fingerprint(["wild-checked", self.image_size,
                           *file_fingerprint([crop_root / r for r in relpaths], crop_root)])
        arrays = cached_arrays(self.cache_dir, key,
                               lambda: decode_crops(crop_root, relpaths, self.image_size))
        readable = np.asarray(arrays["readable"], bool)
        if not readable.all():
            skipped = [rel for rel, ok in zip(relpaths, readable) if not ok]
            log.warning("left out %d unreadable or blank image(s), e.g. %s",
                        len(skipped), crop_root / skipped[0])
        keep, labels = select_classes(labels, names, self.class_names)
        keep, labels = keep[readable[keep]], labels[readable[keep]]
        images = np.asarray(arrays["images"])[keep]
        parts = random_split(images, labels, self.train_fraction, self.test_fraction, self.seed)
        return {split: (images[index], labels[index]) for split, index in parts.items()}

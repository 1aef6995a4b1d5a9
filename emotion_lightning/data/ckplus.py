"""CKPlusDataModule: CK+ (the extended Cohn-Kanade set), from its sequence layout or the CK+48
class-folder copy, split by subject into k folds (never by frame)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emotion_lightning.constants import DEFAULT_CLASSES, canonical_emotion
from emotion_lightning.data.base import GrayImageDataModule, LoaderOptions, select_classes
from emotion_lightning.data.cache import DEFAULT_CACHE_DIR
from emotion_lightning.data.face_boxes import listed_faces
from emotion_lightning.data.label_files import LabelFileError, SkipReport, require_classes
from emotion_lightning.faces.class_folders import list_class_folders
from emotion_lightning.images import STILL_IMAGE_SUFFIXES
from emotion_lightning.textfiles import open_text

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

log = logging.getLogger(__name__)
#: CK+'s own names of its emotion labels 0-7, in order, and their canonical names (the
#: Emotion/ files hold 1-7; 0 is the neutral onset).
CKPLUS_LABELS: tuple[str, ...] = ("neutral", "anger", "contempt", "disgust", "fear", "happy",
                                  "sadness", "surprise")
CKPLUS_CLASSES: tuple[str, ...] = tuple(canonical_emotion(n) for n in CKPLUS_LABELS)
IMAGE_DIR, EMOTION_DIR, LANDMARK_DIR = "cohn-kanade-images", "Emotion", "Landmarks"
SUBJECT = re.compile(r"^(S\d+)_")
HOW_TO_GET = (
    "CK+ is licensed for research by its authors: request it at https://www.jeffcohn.net/"
    "Resources/ and pass data.root=<folder holding cohn-kanade-images/, Emotion/ and "
    "Landmarks/>, or a CK+48 copy: <root>/<emotion>/S005_001_00000011.png.")


def read_emotion_file(path: Path) -> int:
    """The CK+ label 0-7 in an ``*_emotion.txt`` file (one number, e.g. ``3.0000000e+00``)."""
    with open_text(path) as f:
        numbers = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
    if len(numbers) != 1:
        raise LabelFileError(f"{path}: expected one emotion number, found {len(numbers)} lines")
    line_no, text = numbers[0]
    try:
        value = float(text)
    except ValueError:
        raise LabelFileError(f"{path}:{line_no}: {text!r} is not a number") from None
    if value != int(value) or not 0 <= value < len(CKPLUS_CLASSES):
        raise LabelFileError(f"{path}:{line_no}: emotion {text} is not an integer 0-7 "
                             f"{CKPLUS_LABELS}")
    return int(value)


def read_landmarks(path: Path) -> np.ndarray:
    """The 68 ``x y`` points of a CK+ ``*_landmarks.txt`` file as a ``[68, 2]`` array."""
    points = []
    with open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                x, y = (float(v) for v in line.split())
            except ValueError:
                raise LabelFileError(f"{path}:{line_no}: expected two numbers 'x y', got "
                                     f"{line.strip()!r}") from None
            points.append((x, y))
    if len(points) < 3:
        raise LabelFileError(f"{path}: {len(points)} landmark points, expected 68")
    return np.asarray(points, np.float32)


def subject_folds(subjects: Sequence[str], folds: int, seed: int) -> dict[str, int]:
    """A fold 0..folds-1 per subject: subjects shuffled (seeded) and dealt out in turn."""
    unique = sorted(set(subjects))
    if len(unique) < folds:
        raise ValueError(f"{len(unique)} subjects cannot fill {folds} folds; lower data.folds")
    order = np.random.default_rng(seed).permutation(len(unique))
    return {unique[j]: rank % folds for rank, j in enumerate(order)}


class CKPlusDataModule(GrayImageDataModule):
    """CK+ by subject: fold ``fold`` of ``folds`` is the test split, the next fold the
    validation split, the rest training (the subject-independent k-fold protocol).

    Args:
        root: the sequence layout (``cohn-kanade-images/Sxxx/yyy/*.png``,
            ``Emotion/Sxxx/yyy/*_emotion.txt``, ``Landmarks/Sxxx/yyy/*_landmarks.txt``) or the
            CK+48 copy (``<emotion>/S005_001_00000011.png``).
        classes: ordered subset of CK+'s eight labels.
        folds, fold: the number of subject folds and the one tested.
        peak_frames: the last frames of each labelled sequence taken with its emotion.
        neutral_frames: the first frames of each labelled sequence taken as neutral (0: none).
        seed: how subjects are dealt into folds.
        cache_dir: decoded faces are cached here; ``None`` disables.
        loader: ``image_size``, ``batch_size``, ``num_workers``, ``augment``, ``augmentation``,
            ``pin_memory``: see :class:`GrayImageDataModule`.

    In the sequence layout the face is cut from the box of the frame's 68 landmarks with our
    FER-like framing; labelled sequences without images or landmarks are left out and reported.
    """

    #: The emotions this dataset labels (cross-dataset evaluation reads it).
    DATASET_CLASSES = CKPLUS_CLASSES

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] = DEFAULT_CLASSES,
        folds: int = 10,
        fold: int = 0,
        peak_frames: int = 3,
        neutral_frames: int = 0,
        seed: int = 42,
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
        **loader: Unpack[LoaderOptions],
    ) -> None:
        super().__init__(classes, **loader)
        require_classes(self.class_names, CKPLUS_CLASSES, "CK+")
        if folds < 3 or not 0 <= fold < folds:
            raise ValueError(f"need folds >= 3 (test, validation, training) and 0 <= fold < "
                             f"folds, got folds={folds}, fold={fold}")
        if peak_frames < 1 or neutral_frames < 0:
            raise ValueError(f"need peak_frames >= 1 and neutral_frames >= 0, got {peak_frames}, "
                             f"{neutral_frames}")
        self.root = Path(root).expanduser()
        self.folds, self.fold, self.seed = folds, fold, seed
        self.peak_frames, self.neutral_frames = peak_frames, neutral_frames
        self.cache_dir = cache_dir

    def _sequence_frames(self, report: SkipReport) -> tuple[list[Path], np.ndarray, list[int]]:
        """(frame images, boxes, CK+ labels) of every labelled sequence."""
        paths, boxes, labels = [], [], []
        if "neutral" in self.class_names and self.neutral_frames == 0:
            raise ValueError("CK+'s Emotion/ files label no frame neutral: with neutral among "
                             "data.classes, take each sequence's onset as neutral "
                             "(data.neutral_frames=1) or leave neutral out")
        landmark_root = self.root / LANDMARK_DIR
        if not landmark_root.is_dir():
            raise FileNotFoundError(f"{landmark_root}: CK+'s Landmarks/ folder is missing; the "
                                    f"faces are cut from its boxes. {HOW_TO_GET}")
        for emotion_file in sorted((self.root / EMOTION_DIR).glob("S*/*/*_emotion.txt")):
            sequence = emotion_file.parent.relative_to(self.root / EMOTION_DIR)
            label = read_emotion_file(emotion_file)
            frames = sorted(p for p in (self.root / IMAGE_DIR / sequence).glob("*")
                            if p.suffix.lower() in STILL_IMAGE_SUFFIXES)
            if not frames:
                report.add("labelled sequence without images", str(emotion_file))
                continue
            chosen = [(f, label) for f in frames[-self.peak_frames:]]
            chosen += [(f, 0) for f in frames[:self.neutral_frames]]
            for frame, frame_label in chosen:
                marks = landmark_root / sequence / f"{frame.stem}_landmarks.txt"
                if not marks.is_file():
                    report.add("frame without a landmarks file", str(marks))
                    continue
                points = read_landmarks(marks)
                paths.append(frame)
                boxes.append((*points.min(axis=0), *points.max(axis=0)))
                labels.append(frame_label)
        if not paths:
            raise FileNotFoundError(f"no labelled CK+ frames under {self.root}. {HOW_TO_GET}")
        return paths, np.asarray(boxes, np.float32), labels

    def _class_folder_frames(self) -> tuple[list[Path], list[int]]:
        """(images, CK+ labels) of the CK+48 class-folder copy."""
        entries = list_class_folders(self.root)
        unknown = sorted({label for _, label in entries} - set(CKPLUS_CLASSES))
        if unknown:
            raise LabelFileError(f"{self.root}: folder(s) {unknown} are not CK+ emotions "
                                 f"{CKPLUS_CLASSES}; rename or remove them")
        missing = [c for c in self.class_names if c not in {label for _, label in entries}]
        if missing:
            raise ValueError(f"this CK+ copy ({self.root}) has no {missing} folder; its classes "
                             f"are {sorted({label for _, label in entries})}")
        return ([self.root / rel for rel, _ in entries],
                [CKPLUS_CLASSES.index(label) for _, label in entries])

    def load_splits(self, stage: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"CK+ root {self.root} does not exist. {HOW_TO_GET}")
        report = SkipReport("CK+")
        if (self.root / IMAGE_DIR).is_dir():
            paths, boxes, labels = self._sequence_frames(report)
            tag = "ck+ sequences"
        else:
            (paths, labels), boxes, tag = self._class_folder_frames(), None, "ck+48"
        subjects = []
        for path in paths:
            match = SUBJECT.match(path.name)
            if match is None:
                raise LabelFileError(f"{path}: the file name does not start with the subject "
                                     "(S005_001_00000011.png), so the subject split is unknown")
            subjects.append(match.group(1))
        faces, ok = listed_faces(self.cache_dir, tag, paths, boxes, self.image_size,
                                 [str(p) for p in paths], report)
        report.log()
        keep, labels = select_classes(np.asarray(labels), CKPLUS_CLASSES, self.class_names)
        keep, labels = keep[ok[keep]], labels[ok[keep]]
        fold_of = subject_folds(subjects, self.folds, self.seed)
        folds = np.asarray([fold_of[subjects[i]] for i in keep])
        val_fold = (self.fold + 1) % self.folds
        parts = {"test": folds == self.fold, "val": folds == val_fold,
                 "train": (folds != self.fold) & (folds != val_fold)}
        return {s: (faces[keep[mask]], labels[mask]) for s, mask in parts.items()}

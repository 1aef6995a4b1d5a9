"""EmotionDetector: every face in an image, boxed by MTCNN and classified by a checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch

from emotion_lightning.detect.drawing import draw_faces
from emotion_lightning.detect.results import FaceEmotion
from emotion_lightning.faces.align import align_face
from emotion_lightning.faces.crop import crop_face
from emotion_lightning.faces.detector import Detections, FaceDetector
from emotion_lightning.images import FER_SIZE, as_rgb
from emotion_lightning.models.classifier import EmotionClassifier
from emotion_lightning.models.ensemble import ClassifierEnsemble
from emotion_lightning.models.loading import load_model
from emotion_lightning.runtime import auto_precision

#: An RGB (or gray) uint8 array, or the path of an image file.
ImageLike = np.ndarray | str | Path
#: Faces classified per forward pass (bounds memory when a video batch holds many faces).
CLASSIFY_CHUNK = 64
#: Classifier precisions: the autocast dtype of each (``None``: fp32).
PRECISIONS: dict[str, torch.dtype | None] = {
    "32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def inference_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``auto`` picks as training's
    ``precision=auto`` does (bf16 on GPUs and on CPUs with native bf16, else fp32/fp16)."""
    if precision == "auto":
        precision, _ = auto_precision("gpu" if device.type == "cuda" else "cpu")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto or one of {', '.join(PRECISIONS)}, got "
                         f"{precision!r}")
    return PRECISIONS[precision]


class FaceFinder(Protocol):
    """Anything that finds faces like :class:`~emotion_lightning.faces.FaceDetector`."""

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` is the first GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} but no CUDA GPU is available; use device=cpu")
    return device


class EmotionDetector:
    """Finds faces with ``face_finder`` and classifies all of a batch's faces in one forward.

    Args:
        classifier: a trained :class:`EmotionClassifier`; its class names, input size and
            test-time views (``test_time_flip``, ``test_time_shift``) are used.
        face_finder: a :class:`FaceDetector` (MTCNN) or anything with its ``detect``.
        crop_size: side the face is cut out at before resizing to the model's input, as the
            training crops were (FER2013 and ``emotion-faces`` crops: 48).
        margin: fraction of the face box added around it (0 frames faces like FER2013).
        detect_max_side: search faces in a copy downscaled to this longer side (faster on
            large images; boxes are mapped back); ``None`` searches at full size.
        align_faces: cut faces by their landmarks (eyes level, FER framing), as
            ``emotion-faces build`` does by default; ``False``: the box crop.
        precision: the classifier's arithmetic: ``auto`` (bf16 autocast where training's
            ``precision=auto`` would use it: GPUs, CPUs with avx512_bf16/AMX; the regime the
            recipes validate in), ``32-true``, ``bf16-mixed`` or ``16-mixed``.
    """

    def __init__(
        self,
        classifier: EmotionClassifier | ClassifierEnsemble,
        face_finder: FaceFinder,
        crop_size: int = FER_SIZE,
        margin: float = 0.0,
        detect_max_side: int | None = None,
        align_faces: bool = True,
        precision: str = "auto",
    ) -> None:
        if detect_max_side is not None and detect_max_side < 32:
            raise ValueError(f"detect_max_side must be >= 32 pixels or None, got {detect_max_side}")
        self.classifier = classifier.eval()
        self.face_finder = face_finder
        self.crop_size = crop_size
        self.margin = margin
        self.detect_max_side = detect_max_side
        self.align_faces = align_faces
        self.precision = precision
        self._autocast = inference_dtype(precision, classifier.device)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | Sequence[str | Path],
        device: str | torch.device = "auto",
        min_face_prob: float = 0.95,
        min_face_size: int = 20,
        face_batch_size: int = 16,
        test_time_flip: bool | None = None,
        test_time_shift: int | None = None,
        crop_size: int = FER_SIZE,
        margin: float = 0.0,
        detect_max_side: int | None = None,
        align_faces: bool = True,
        precision: str = "auto",
    ) -> EmotionDetector:
        """A detector from an ``EmotionClassifier`` checkpoint (or a list of them: their
        ensemble) and an MTCNN face detector.

        ``test_time_flip``/``test_time_shift`` override the checkpoint's settings when not
        ``None``.
        """
        device = resolve_device(device)
        classifier = load_model(path, device, test_time_flip, test_time_shift)
        finder = FaceDetector(min_face_prob, min_face_size, face_batch_size, device)
        return cls(classifier, finder, crop_size, margin, detect_max_side, align_faces, precision)

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names

    @property
    def image_size(self) -> int:
        return int(self.classifier.hparams.image_size)

    def detect(self, image: ImageLike) -> list[FaceEmotion]:
        """Every face in one image with its emotion, most confidently detected first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[ImageLike]) -> list[list[FaceEmotion]]:
        """:meth:`detect` for each image; the faces of all images are classified together."""
        arrays = [as_rgb(image) for image in images]
        return self.classify(arrays, self.find_faces(arrays))

    def find_faces(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """The face detections of each image (in its own pixel coordinates)."""
        if self.detect_max_side is None:
            return self.face_finder.detect(images)
        factors = [min(1.0, self.detect_max_side / max(image.shape[:2])) for image in images]
        small = [_shrink(image, f) for image, f in zip(images, factors, strict=True)]
        return [
            found if f == 1.0 else Detections(found.boxes / f, found.probs, found.landmarks / f)
            for found, f in zip(self.face_finder.detect(small), factors, strict=True)
        ]

    @torch.inference_mode()
    def classify(
        self, images: Sequence[np.ndarray], detections: Sequence[Detections]
    ) -> list[list[FaceEmotion]]:
        """Classify the detected faces of every image, batched (``CLASSIFY_CHUNK`` at a time)."""
        crops = [
            self._crop(image, box, points)
            for image, found in zip(images, detections, strict=True)
            for box, points in zip(found.boxes, found.landmarks, strict=True)
        ]
        device = self.classifier.device.type
        with torch.autocast(device, self._autocast or torch.float32, enabled=bool(self._autocast)):
            probs = self.classifier.predict_faces(crops, CLASSIFY_CHUNK)
        results, start = [], 0
        for found in detections:
            scores = probs[start : start + len(found)]
            results.append([
                FaceEmotion.from_scores(box, det_prob, self.class_names, p)
                for box, det_prob, p in zip(found.boxes, found.probs, scores, strict=True)
            ])
            start += len(found)
        return results

    def _crop(self, image: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        if self.align_faces:
            return align_face(image, box, landmarks, self.crop_size, self.margin).image
        return crop_face(image, box, self.crop_size, self.margin)

    def annotate(
        self, image: ImageLike, faces: Sequence[FaceEmotion] | None = None, bars: bool = True
    ) -> np.ndarray:
        """A copy of ``image`` (RGB) with its faces drawn; ``faces`` defaults to :meth:`detect`."""
        rgb = as_rgb(image)
        if faces is None:
            faces = self.detect(rgb)
        return draw_faces(rgb, faces, self.class_names, bars)


def _shrink(image: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:
        return image
    size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

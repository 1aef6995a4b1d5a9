"""EmotionDetector: every face in an image, boxed by MTCNN and classified by a checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from emotion_lightning.detect.drawing import draw_faces
from emotion_lightning.detect.results import FaceEmotion
from emotion_lightning.faces.cropper import FaceCrop
from emotion_lightning.faces.detector import Detections, FaceDetector
from emotion_lightning.images import as_rgb
from emotion_lightning.models.classifier import EmotionClassifier
from emotion_lightning.models.ensemble import ClassifierEnsemble
from emotion_lightning.models.loading import load_model
from emotion_lightning.runtime import auto_precision, resolve_device

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


class EmotionDetector:
    """Finds faces with ``face_finder`` and classifies all of a batch's faces in one forward.

    Args:
        classifier: a trained :class:`EmotionClassifier` (or an ensemble); its class names,
            input size and test-time views (``test_time_flip``, ``test_time_shift``) are used.
        face_finder: a :class:`FaceDetector` (MTCNN; its ``max_side`` searches large images
            downscaled) or anything with its ``detect``.
        crop: how faces are cut out before resizing to the model's input, as the training
            crops were (default :class:`FaceCrop`: 48 px, landmark-aligned, as
            ``emotion-faces build`` cuts).
        precision: the classifier's arithmetic: ``auto`` (bf16 autocast where training's
            ``precision=auto`` would use it: GPUs, CPUs with avx512_bf16/AMX; the regime the
            recipes validate in), ``32-true``, ``bf16-mixed`` or ``16-mixed``.
    """

    def __init__(
        self,
        classifier: EmotionClassifier | ClassifierEnsemble,
        face_finder: FaceFinder,
        crop: FaceCrop | None = None,
        precision: str = "auto",
    ) -> None:
        self.classifier = classifier.eval()
        self.face_finder = face_finder
        self.crop = crop or FaceCrop()
        self.precision = precision
        self._autocast = inference_dtype(precision, classifier.device)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path | Sequence[str | Path],
        device: str | torch.device = "auto",
        face_finder: FaceFinder | None = None,
        crop: FaceCrop | None = None,
        test_time_flip: bool | None = None,
        test_time_shift: int | None = None,
        precision: str = "auto",
        prior_tau: float | None = None,
    ) -> EmotionDetector:
        """A detector from an ``EmotionClassifier`` checkpoint (or a list of them: their
        ensemble); ``face_finder`` defaults to MTCNN (:class:`FaceDetector`) on ``device``.

        ``test_time_flip``/``test_time_shift``/``prior_tau`` override the checkpoint's
        settings when not ``None``.
        """
        device = resolve_device(device)
        classifier = load_model(path, device, test_time_flip, test_time_shift, prior_tau=prior_tau)
        return cls(classifier, face_finder or FaceDetector(device=device), crop, precision)

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
        return self.face_finder.detect(images)

    @torch.inference_mode()
    def classify(
        self, images: Sequence[np.ndarray], detections: Sequence[Detections]
    ) -> list[list[FaceEmotion]]:
        """Classify the detected faces of every image, batched (``CLASSIFY_CHUNK`` at a time)."""
        crops = [
            self.crop.cut(image, box, points)[0]
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

    def annotate(
        self, image: ImageLike, faces: Sequence[FaceEmotion] | None = None, bars: bool = True
    ) -> np.ndarray:
        """A copy of ``image`` (RGB) with its faces drawn; ``faces`` defaults to :meth:`detect`."""
        rgb = as_rgb(image)
        if faces is None:
            faces = self.detect(rgb)
        return draw_faces(rgb, faces, self.class_names, bars)

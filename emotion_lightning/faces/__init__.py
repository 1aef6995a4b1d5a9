"""Face detection, FER-style cropping, the face-dataset build and its manual review."""

from emotion_lightning.faces.align import AlignedCrop, align_face
from emotion_lightning.faces.boxes import box_iou, match_boxes, square_box
from emotion_lightning.faces.build import FaceDatasetBuilder
from emotion_lightning.faces.crop import crop_face, crop_square
from emotion_lightning.faces.cropper import FaceCrop
from emotion_lightning.faces.detector import Detections, FaceDetector
from emotion_lightning.faces.exclusions import (
    EXCLUDE_NAME,
    add_exclusions,
    merge_exclusion_list,
    read_exclusions,
)
from emotion_lightning.faces.policy import POLICIES, FaceChoice, choose_face
from emotion_lightning.faces.review import write_review_pages

__all__ = [
    "EXCLUDE_NAME",
    "AlignedCrop",
    "POLICIES",
    "Detections",
    "FaceCrop",
    "FaceChoice",
    "FaceDatasetBuilder",
    "FaceDetector",
    "add_exclusions",
    "align_face",
    "box_iou",
    "choose_face",
    "crop_face",
    "crop_square",
    "match_boxes",
    "merge_exclusion_list",
    "read_exclusions",
    "square_box",
    "write_review_pages",
]

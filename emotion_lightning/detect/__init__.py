"""Apply a trained classifier: find every face, classify it, draw it, tabulate it.

    from emotion_lightning.detect import EmotionDetector

    detector = EmotionDetector.from_checkpoint("best.ckpt", device="cpu")
    faces = detector.detect("group.jpg")    # [FaceEmotion(box, det_prob, probabilities, ...)]
    drawn = detector.annotate("group.jpg")  # RGB array with boxes, labels and bar charts
"""

from emotion_lightning.detect.annotate import MediaAnnotator
from emotion_lightning.detect.drawing import draw_faces
from emotion_lightning.detect.emotion_detector import EmotionDetector
from emotion_lightning.detect.reports import RunReport, SourceReport
from emotion_lightning.detect.results import FaceEmotion
from emotion_lightning.detect.sources import Media, Skipped, collect_media
from emotion_lightning.detect.table import FIXED_COLUMNS, DetectionTable
from emotion_lightning.detect.tracking import FaceTracker, NoTracker, Tracker

__all__ = [
    "FIXED_COLUMNS",
    "DetectionTable",
    "EmotionDetector",
    "FaceEmotion",
    "FaceTracker",
    "Media",
    "MediaAnnotator",
    "NoTracker",
    "RunReport",
    "Skipped",
    "SourceReport",
    "Tracker",
    "collect_media",
    "draw_faces",
]

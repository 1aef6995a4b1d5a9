"""Face tracks across video frames: boxes follow faces between searches and keep an id."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from emotion_lightning.faces.boxes import match_pairs
from emotion_lightning.faces.detector import Detections

_FLOW = {"winSize": (15, 15), "maxLevel": 2,
         "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}


def follow_box(previous: np.ndarray, current: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """``box`` moved from the gray frame ``previous`` to ``current`` by the median sparse optical
    flow of corners inside it (forward-backward checked), scaled by how their spread changed.
    ``None`` when too few corners can be followed."""
    height, width = previous.shape
    x1, y1, x2, y2 = np.clip(np.round(box), 0, [width - 1, height - 1, width, height]).astype(int)
    if x2 - x1 < 8 or y2 - y1 < 8:
        return None
    mask = np.zeros_like(previous)
    mask[y1:y2, x1:x2] = 255
    points = cv2.goodFeaturesToTrack(previous, maxCorners=40, qualityLevel=0.01, minDistance=3,
                                     mask=mask)
    if points is None or len(points) < 3:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, points, None, **_FLOW)
    back, back_status, _ = cv2.calcOpticalFlowPyrLK(current, previous, moved, None, **_FLOW)
    good = ((status[:, 0] == 1) & (back_status[:, 0] == 1)
            & (np.linalg.norm(back - points, axis=2)[:, 0] < 1.0))
    if good.sum() < 3:
        return None
    start, end = points[good, 0], moved[good, 0]
    shift = np.median(end - start, axis=0)
    spread_start = np.linalg.norm(start - start.mean(0), axis=1).mean()
    spread_end = np.linalg.norm(end - end.mean(0), axis=1).mean()
    scale = float(np.clip(spread_end / max(spread_start, 1e-3), 0.8, 1.25))
    centre = (box[:2] + box[2:4]) / 2 + shift
    half = (box[2:4] - box[:2]) / 2 * scale
    return np.concatenate([centre - half, centre + half]).astype(np.float32)


@dataclass
class Track:
    """One face followed across frames."""

    id: int
    box: np.ndarray  # left, top, right, bottom in the current frame
    det_prob: float  # from the last search that found it


class FaceTracker:
    """Gives every face a track id and a box on every frame of a video.

    A searched frame's detections are matched to the tracks (moved there by optical flow) by
    IoU: a matched face keeps its id and takes the detected box, a new face starts a track,
    and a track that no detection matches ends. Between searches the boxes follow the faces
    by optical flow (:func:`follow_box`); a box that cannot be followed stays where it was.

    Args:
        min_iou: overlap a detection needs with a track's box to continue it.
        smoothing: weight of the past in each track's running average of class
            probabilities (0: none; 0.7 averages over roughly the last 3 frames).
    """

    def __init__(self, min_iou: float = 0.3, smoothing: float = 0.0) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.min_iou = min_iou
        self.smoothing = smoothing
        self.tracks: list[Track] = []
        self._next_id = 0
        self._previous: np.ndarray | None = None
        self._smoothed: dict[int, np.ndarray] = {}

    def update(self, gray: np.ndarray, found: Detections | None) -> tuple[Detections, list[int]]:
        """The faces of the next frame (``gray``, uint8) and their track ids; ``found`` holds
        the frame's detections when it was searched, ``None`` when it was not."""
        if self._previous is not None and self._previous.shape == gray.shape:
            for track in self.tracks:
                moved = follow_box(self._previous, gray, track.box)
                if moved is not None:
                    track.box = moved
        self._previous = gray
        if found is not None:
            self._match(found)
        boxes = np.array([t.box for t in self.tracks], np.float32).reshape(-1, 4)
        probs = np.array([t.det_prob for t in self.tracks], np.float32)
        return Detections(boxes, probs, np.zeros((len(boxes), 5, 2), np.float32)), [
            t.id for t in self.tracks]

    def _match(self, found: Detections) -> None:
        old = np.array([t.box for t in self.tracks], np.float32).reshape(-1, 4)
        pairs = {j: i for i, j in match_pairs(old, found.boxes, self.min_iou)}
        tracks = []
        for j, (box, prob) in enumerate(zip(found.boxes, found.probs, strict=True)):
            if j in pairs:
                track = self.tracks[pairs[j]]
                track.box, track.det_prob = box.astype(np.float32), float(prob)
            else:
                track = Track(self._next_id, box.astype(np.float32), float(prob))
                self._next_id += 1
            tracks.append(track)
        self.tracks = tracks

    def smooth(self, ids: list[int], probabilities: np.ndarray) -> np.ndarray:
        """Each face's class probabilities averaged along its track (``smoothing`` > 0), else
        ``probabilities`` unchanged; call once per frame, in frame order."""
        if self.smoothing == 0.0:
            return probabilities
        out = np.empty_like(probabilities)
        for row, (track_id, probs) in enumerate(zip(ids, probabilities, strict=True)):
            past = self._smoothed.get(track_id)
            out[row] = probs if past is None else self.smoothing * past + (1 - self.smoothing) * probs
            self._smoothed[track_id] = out[row]
        return out

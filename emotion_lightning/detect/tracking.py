"""Face tracks across video frames: boxes follow faces between searches and keep an id.

A tracker is anything with :class:`Tracker`'s two methods; ``emotion-detect`` makes a new one
per video from the ``tracker`` config group (``tracker=flow``: :class:`FaceTracker`,
``tracker=none``: :class:`NoTracker`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from emotion_lightning.faces.boxes import match_pairs
from emotion_lightning.faces.detector import Detections
from emotion_lightning.images import to_gray

# 4 pyramid levels with a 21 px window follow motions up to ~80 px a frame (a fast pan)
_FLOW = {"winSize": (21, 21), "maxLevel": 3,
         "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}


def follow_boxes(
    previous: np.ndarray, current: np.ndarray, boxes: list[np.ndarray]
) -> list[np.ndarray | None]:
    """Each box moved from the gray frame ``previous`` to ``current`` by the median sparse
    optical flow of the corners inside it (forward-backward checked), scaled by the median
    change of their distances to their centroid; ``None`` for a box with too few corners that
    can be followed. The corners of all boxes are followed in one pyramidal Lucas-Kanade pass
    each way."""
    height, width = previous.shape
    starts, owners = [], []
    for k, box in enumerate(boxes):
        x1, y1, x2, y2 = np.clip(np.round(box[:4]), 0, [width, height, width, height]).astype(int)
        if x2 - x1 < 8 or y2 - y1 < 8:
            continue
        corners = cv2.goodFeaturesToTrack(previous[y1:y2, x1:x2], maxCorners=40,
                                          qualityLevel=0.01, minDistance=3)
        if corners is not None and len(corners) >= 3:
            starts.append(corners.reshape(-1, 2) + [x1, y1])
            owners.append(np.full(len(corners), k))
    moved_boxes: list[np.ndarray | None] = [None] * len(boxes)
    if not starts:
        return moved_boxes
    points = np.concatenate(starts).astype(np.float32).reshape(-1, 1, 2)
    owner = np.concatenate(owners)
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, points, None, **_FLOW)
    back, back_status, _ = cv2.calcOpticalFlowPyrLK(current, previous, moved, None, **_FLOW)
    good = ((status[:, 0] == 1) & (back_status[:, 0] == 1)
            & (np.linalg.norm(back - points, axis=2)[:, 0] < 1.0))
    for k in np.unique(owner):
        mine = good & (owner == k)
        if mine.sum() < 3:
            continue
        start, end = points[mine, 0], moved[mine, 0]
        shift = np.median(end - start, axis=0)
        # median of the corners' distance ratios to their centroid: robust to a few bad ones
        radius_start = np.linalg.norm(start - start.mean(0), axis=1)
        radius_end = np.linalg.norm(end - end.mean(0), axis=1)
        usable = radius_start > 2.0
        ratios = radius_end[usable] / radius_start[usable]
        scale = float(np.clip(np.median(ratios), 0.8, 1.25)) if usable.sum() >= 3 else 1.0
        box = boxes[k]
        centre = (box[:2] + box[2:4]) / 2 + shift
        half = (box[2:4] - box[:2]) / 2 * scale
        moved_boxes[k] = np.concatenate([centre - half, centre + half]).astype(np.float32)
    return moved_boxes


class Tracker(Protocol):
    """Follows the faces of one video, frame by frame in order."""

    def update(
        self, frame: np.ndarray, found: Detections | None
    ) -> tuple[Detections, list[int | None]] | None:
        """The faces of the next frame (RGB or gray, uint8) and their track ids; ``found`` holds
        the frame's detections when it was searched, ``None`` when it was not. ``None`` back:
        no faces of the tracker's own for this frame (the last ones stay drawn, no rows)."""
        ...

    def smooth(self, ids: list[int | None], probabilities: np.ndarray) -> np.ndarray:
        """The class probabilities to show for the faces ``ids`` of the frame just updated."""
        ...


class NoTracker:
    """No tracking: a searched frame's faces stay drawn until the next search; only searched
    frames get rows, and faces get no track id."""

    def update(
        self, frame: np.ndarray, found: Detections | None
    ) -> tuple[Detections, list[int | None]] | None:
        return None if found is None else (found, [None] * len(found))

    def smooth(self, ids: list[int | None], probabilities: np.ndarray) -> np.ndarray:
        return probabilities


@dataclass
class Track:
    """One face followed across frames."""

    id: int
    box: np.ndarray  # left, top, right, bottom in the current frame
    det_prob: float  # from the last search that found it
    landmarks: np.ndarray  # 5x2, moved with the box since that search

    def move(self, box: np.ndarray) -> None:
        """Put the track at ``box``, its landmarks shifted and scaled along."""
        old_centre, new_centre = (self.box[:2] + self.box[2:4]) / 2, (box[:2] + box[2:4]) / 2
        scale = (box[2] - box[0]) / max(float(self.box[2] - self.box[0]), 1e-6)
        self.landmarks = ((self.landmarks - old_centre) * scale + new_centre).astype(np.float32)
        self.box = box


class FaceTracker:
    """Gives every face a track id and a box on every frame of a video.

    A searched frame's detections are matched to the tracks (moved there by optical flow) by
    IoU: a matched face keeps its id and takes the detected box, a new face starts a track,
    and a track that no detection matches ends. Between searches the boxes follow the faces
    by optical flow (:func:`follow_boxes`); a box that cannot be followed moves by the median
    motion of those that can (a camera pan), or stays where it was when none can.

    Args:
        min_iou: overlap (IoU) a detection needs with a track's box to continue it.
        smoothing: weight of the past in each track's running average of class
            probabilities (0: none; 0.7 averages over roughly the last 3 frames).
    """

    def __init__(self, min_iou: float = 0.3, smoothing: float = 0.0) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {min_iou}")
        self.min_iou = min_iou
        self.smoothing = smoothing
        self.tracks: list[Track] = []
        self._next_id = 0
        self._previous: np.ndarray | None = None
        self._smoothed: dict[int, np.ndarray] = {}

    def update(self, frame: np.ndarray, found: Detections | None) -> tuple[Detections, list[int]]:
        """The faces of the next frame (RGB or gray, uint8) and their track ids; ``found``
        holds the frame's detections when it was searched, ``None`` when it was not."""
        gray = to_gray(frame)
        if self._previous is not None and self._previous.shape == gray.shape:
            lost, shifts = [], []
            followed = follow_boxes(self._previous, gray, [t.box for t in self.tracks])
            for track, moved in zip(self.tracks, followed, strict=True):
                if moved is None:
                    lost.append(track)
                else:
                    shifts.append((moved[:2] + moved[2:4] - track.box[:2] - track.box[2:4]) / 2)
                    track.move(moved)
            if lost and shifts:  # a face without corners to follow moves with the others
                shift = np.median(shifts, axis=0)
                for track in lost:
                    track.move(track.box + np.tile(shift, 2).astype(np.float32))
        self._previous = gray
        if found is not None:
            self._match(found)
        boxes = np.array([t.box for t in self.tracks], np.float32).reshape(-1, 4)
        probs = np.array([t.det_prob for t in self.tracks], np.float32)
        points = np.array([t.landmarks for t in self.tracks], np.float32).reshape(-1, 5, 2)
        return Detections(boxes, probs, points), [t.id for t in self.tracks]

    def _match(self, found: Detections) -> None:
        old = np.array([t.box for t in self.tracks], np.float32).reshape(-1, 4)
        pairs = {j: i for i, j in match_pairs(old, found.boxes, self.min_iou)}
        tracks = []
        for j, (box, prob, points) in enumerate(
                zip(found.boxes, found.probs, found.landmarks, strict=True)):
            if j in pairs:
                track = self.tracks[pairs[j]]
                track.box, track.det_prob = box.astype(np.float32), float(prob)
                track.landmarks = points.astype(np.float32)
            else:
                track = Track(self._next_id, box.astype(np.float32), float(prob),
                              points.astype(np.float32))
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

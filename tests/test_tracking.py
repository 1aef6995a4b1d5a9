"""Face tracking between searched frames: boxes follow the faces, ids persist, labels smooth."""

from __future__ import annotations

import csv
from functools import partial

import cv2
import numpy as np
import pytest
from hydra.utils import instantiate

from emotion_lightning.detect import EmotionDetector, MediaAnnotator
from emotion_lightning.detect.tracking import FaceTracker, NoTracker, follow_boxes
from emotion_lightning.faces.boxes import box_iou, match_pairs
from emotion_lightning.faces.detector import Detections
from tests.conftest import compose_cfg

SIZE = (120, 160)  # height, width
PATCH = 40


def texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(40, 255, (10, 10), dtype=np.uint8), (PATCH, PATCH),
                      interpolation=cv2.INTER_CUBIC)


def scene(positions: list[tuple[int, int]]) -> np.ndarray:
    """A dark frame with a textured square ("face") at each (left, top)."""
    frame = np.full(SIZE, 10, np.uint8)
    for seed, (x, y) in enumerate(positions):
        frame[y:y + PATCH, x:x + PATCH] = texture(seed)
    return frame


def truth(x: int, y: int) -> np.ndarray:
    return np.array([x, y, x + PATCH, y + PATCH], np.float32)


def detections(*boxes) -> Detections:
    return Detections(np.array(boxes, np.float32).reshape(-1, 4),
                      np.full(len(boxes), 0.99, np.float32), np.zeros((len(boxes), 5, 2)))


def test_iou_and_greedy_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[21, 21, 31, 31], [0, 0, 10, 5], [50, 50, 60, 60]], np.float32)
    iou = box_iou(a, b)
    assert iou.shape == (2, 3) and iou[0, 1] == pytest.approx(0.5) and iou[0, 2] == 0
    assert sorted(match_pairs(a, b, 0.3)) == [(0, 1), (1, 0)]
    assert match_pairs(a, b, 0.9) == []
    assert box_iou(a[:0], b).shape == (0, 3)


def test_a_box_follows_its_texture():
    before, after = scene([(30, 20)]), scene([(36, 23)])
    tiny = np.array([0, 0, 4, 4], np.float32)
    moved, too_small = follow_boxes(before, after, [truth(30, 20), tiny])
    np.testing.assert_allclose(moved, truth(36, 23), atol=1.0)
    assert too_small is None
    flat = np.full(SIZE, 10, np.uint8)
    assert follow_boxes(flat, flat, [truth(30, 20)]) == [None]  # nothing to follow


def test_boxes_follow_a_fast_pan_and_faces_without_corners_move_with_it():
    wide = np.full((120, 400), 10, np.uint8)
    for seed, x in enumerate((40, 130)):
        wide[30:30 + PATCH, x:x + PATCH] = texture(seed)
    wide[15:85, 205:275] = 200  # a flat patch: the box inside it has no corners to follow
    boxes = [truth(40, 30), truth(130, 30), truth(220, 30)]
    tracker = FaceTracker()
    tracker.update(np.ascontiguousarray(wide[:, :300]), detections(*boxes))
    for step in (1, 2):  # the camera pans 34 px a frame: the scene moves left
        frame = np.ascontiguousarray(wide[:, 34 * step:34 * step + 300])
        found, ids = tracker.update(frame, None)
        expected = np.array([b - [34 * step, 0, 34 * step, 0] for b in boxes])
        assert ids == [0, 1, 2]
        np.testing.assert_allclose(found.boxes, expected, atol=1.5)


def test_tracker_keeps_ids_follows_between_searches_and_ends_lost_faces():
    tracker = FaceTracker()
    path = [(20 + 3 * i, 30 + i) for i in range(9)]
    for i, (x, y) in enumerate(path):
        searched = detections(truth(x, y)) if i in (0, 8) else None
        found, ids = tracker.update(scene([(x, y)]), searched)
        assert ids == [0]
        assert box_iou(found.boxes, truth(x, y)[None])[0, 0] > 0.85, f"frame {i}"
    # a second face appears: a new id; then the first one leaves: its track ends
    found, ids = tracker.update(scene([path[-1], (100, 60)]),
                                detections(truth(*path[-1]), truth(100, 60)))
    assert ids == [0, 1]
    found, ids = tracker.update(scene([(100, 60)]), detections(truth(100, 60)))
    assert ids == [1] and len(found) == 1


def test_smoothing_averages_along_each_track():
    with pytest.raises(ValueError, match="smoothing"):
        FaceTracker(smoothing=1.0)
    tracker = FaceTracker(smoothing=0.5)
    first = tracker.smooth([0, 1], np.array([[1.0, 0.0], [0.0, 1.0]]))
    second = tracker.smooth([0, 1], np.array([[0.0, 1.0], [0.0, 1.0]]))
    np.testing.assert_allclose(first, [[1, 0], [0, 1]])
    np.testing.assert_allclose(second, [[0.5, 0.5], [0, 1]])
    assert FaceTracker().smooth([0], np.array([[0.2, 0.8]])).tolist() == [[0.2, 0.8]]


class PatchFinder:
    """Finds the textured squares of :func:`scene` (bright pixels); counts its calls."""

    def __init__(self) -> None:
        self.frames = 0

    def detect(self, images):
        self.frames += len(images)
        out = []
        for image in images:
            gray = image[..., 0] if image.ndim == 3 else image
            ys, xs = np.nonzero(gray > 30)
            box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else None
            out.append(detections(box) if box is not None else detections())
        return out


def moving_video(path, frames: int = 12) -> list[tuple[int, int]]:
    positions = [(10 + 5 * i, 20 + 2 * i) for i in range(frames)]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, SIZE[::-1])
    for x, y in positions:
        writer.write(cv2.cvtColor(scene([(x, y)]), cv2.COLOR_GRAY2BGR))
    writer.release()
    return positions


@pytest.mark.parametrize("smoothing", [0.0, 0.6])
def test_tracked_video_has_a_row_per_face_per_frame(classifier, tmp_path, smoothing):
    positions = moving_video(tmp_path / "walk.avi")
    finder = PatchFinder()
    annotator = MediaAnnotator(EmotionDetector(classifier, finder), tmp_path / "out",
                               every_n_frames=4, batch_size=2,
                               tracker=partial(FaceTracker, smoothing=smoothing),
                               progress=False, save_annotated=False)
    report = annotator.run(str(tmp_path / "walk.avi"))
    with (tmp_path / "out" / "detections.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert finder.frames == 3 and report.sources[0].searched == 3  # frames 0, 4, 8
    assert [int(r["frame"]) for r in rows] == list(range(12))
    assert {r["track"] for r in rows} == {"0"}
    for row, (x, y) in zip(rows, positions, strict=True):
        box = np.array([[float(row[k]) for k in ("x1", "y1", "x2", "y2")]], np.float32)
        assert box_iou(box, truth(x, y)[None])[0, 0] > 0.75, f"frame {row['frame']}"
    labels = [r["label"] for r in rows]
    if smoothing == 0.0:
        assert [r["track_label"] for r in rows] == labels
    assert all(r["track_label"] in classifier.class_names for r in rows)


def test_untracked_mode_keeps_rows_for_searched_frames_only(classifier, tmp_path):
    moving_video(tmp_path / "walk.avi")
    finder = PatchFinder()
    MediaAnnotator(EmotionDetector(classifier, finder), tmp_path / "out", every_n_frames=4,
                   tracker=NoTracker, progress=False).run(str(tmp_path / "walk.avi"))
    with (tmp_path / "out" / "detections.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["frame"]) for r in rows] == [0, 4, 8] and {r["track"] for r in rows} == {""}
    with pytest.raises(ValueError, match="smoothing"):  # before any output is written
        MediaAnnotator(EmotionDetector(classifier, finder), tmp_path / "o2",
                       tracker=partial(FaceTracker, smoothing=-0.1))
    assert not (tmp_path / "o2").exists()


def test_tracker_group_makes_a_new_tracker_per_video(tmp_path):
    base = ["ckpt_path=model.ckpt", "input=clip.mp4"]
    cfg = compose_cfg("detect", [*base, "tracker.min_iou=0.5", "tracker.smoothing=0.7"], tmp_path)
    make = instantiate(cfg.tracker)
    first, second = make(), make()
    assert isinstance(first, FaceTracker) and first is not second
    assert (first.min_iou, first.smoothing) == (0.5, 0.7)
    assert isinstance(instantiate(compose_cfg("detect", [*base, "tracker=none"], tmp_path).tracker)(),
                      NoTracker)
    with pytest.raises(ValueError, match="min_iou"):
        FaceTracker(min_iou=0.0)

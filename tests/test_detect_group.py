"""emotion-detect on real group photos with hand-labelled face boxes (../shared/data/group).

Every labelled face must get a row whose box matches it (IoU >= 0.5), in the photos and in
a short video built from them that goes through the ``emotion-detect`` command.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion_lightning.detect import EmotionDetector, MediaAnnotator
from emotion_lightning.faces import match_boxes
from tests.conftest import REPO, SHARED_DATA, requires_shared
from tests.test_detect import checkpoint  # noqa: F401  (the session fixture)

GROUP = SHARED_DATA / "group"
pytestmark = [requires_shared("group"), pytest.mark.realdata]
VIDEO_SIZE = (500, 440)  # width, height: every photo fits after scaling
FRAMES_PER_PHOTO = 2


def labelled_boxes() -> dict[str, np.ndarray]:
    """``{file name: Nx4 (x1, y1, x2, y2)}`` from face_boxes_dlib.json."""
    labels = json.loads((GROUP / "face_boxes_dlib.json").read_text())
    return {
        name: np.array([[b["left"], b["top"], b["left"] + b["width"], b["top"] + b["height"]]
                        for b in boxes], np.float32)
        for name, boxes in sorted(labels.items())
    }


def rows_by(path: Path, key: str) -> dict[str, np.ndarray]:
    boxes: dict[str, list] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row[key], []).append([float(row[k]) for k in ("x1", "y1", "x2", "y2")])
    return {k: np.array(v, np.float32) for k, v in boxes.items()}


def assert_every_face_matched(found: np.ndarray, truth: np.ndarray, where: str) -> None:
    matched, extra, missed = match_boxes(found, truth, min_iou=0.5)
    assert missed == 0 and extra == 0, f"{where}: {matched} matched, {extra} extra, {missed} missed"


@pytest.fixture(scope="module")
def detector(checkpoint) -> EmotionDetector:  # noqa: F811
    return EmotionDetector.from_checkpoint(checkpoint)


def test_every_labelled_face_is_annotated(detector, tmp_path):
    truth = labelled_boxes()
    out = tmp_path / "out"
    report = MediaAnnotator(detector, out, progress=False).run(str(GROUP / "voc_*.jpg"))
    assert not report.skipped and len(report.sources) == len(truth)
    found = rows_by(out / "detections.csv", "source")
    for name, boxes in truth.items():
        assert_every_face_matched(found.get(str(GROUP / name), np.zeros((0, 4))), boxes, name)
        original = cv2.imread(str(GROUP / name))
        assert cv2.imread(str(out / name)).shape == original.shape


def letterbox(image: np.ndarray) -> tuple[np.ndarray, float]:
    """``image`` scaled to fit VIDEO_SIZE, on black at the top left; returns it and the scale."""
    width, height = VIDEO_SIZE
    scale = min(width / image.shape[1], height / image.shape[0])
    small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    return canvas, scale


def test_video_round_trip_through_emotion_detect(checkpoint, tmp_path):  # noqa: F811
    truth = labelled_boxes()
    video = tmp_path / "group.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, VIDEO_SIZE)
    expected = {}
    for name, boxes in truth.items():
        frame, scale = letterbox(cv2.imread(str(GROUP / name)))
        for _ in range(FRAMES_PER_PHOTO):
            expected[len(expected)] = boxes * scale
            writer.write(frame)
    writer.release()
    out = tmp_path / "out"
    command = [sys.executable, "-m", "emotion_lightning.cli.detect", f"ckpt_path={checkpoint}",
               f"input={video}", f"output_dir={out}", f"every_n_frames={FRAMES_PER_PHOTO}",
               "progress=false", f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    found = rows_by(out / "detections.csv", "frame")
    searched = list(range(0, len(expected), FRAMES_PER_PHOTO))
    assert sorted(map(int, found)) == searched
    assert sum(len(v) for v in found.values()) == sum(len(b) for b in truth.values())
    for frame in searched:
        assert_every_face_matched(found[str(frame)], expected[frame], f"frame {frame}")
    capture = cv2.VideoCapture(str(out / "group.mp4"))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    assert (size, capture.get(cv2.CAP_PROP_FPS)) == (VIDEO_SIZE, 5.0)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(expected)
    capture.release()

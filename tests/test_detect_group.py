"""emotion-detect on real group photos with hand-labelled face boxes (../shared/data/group).

One run over the photos and a short video built from them: every labelled face must get
exactly one row whose box matches it (IoU >= 0.5) in every photo and every searched frame.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from emotion_lightning.cli.detect import detect
from emotion_lightning.faces import match_boxes
from tests.conftest import SHARED_DATA, compose_cfg, one_torch_thread, requires_shared

GROUP = SHARED_DATA / "group"
pytestmark = requires_shared("group/face_boxes_dlib.json")
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


def letterbox(image: np.ndarray) -> tuple[np.ndarray, float]:
    """``image`` scaled to fit VIDEO_SIZE, on black at the top left; returns it and the scale."""
    width, height = VIDEO_SIZE
    scale = min(width / image.shape[1], height / image.shape[0])
    small = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                       interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    return canvas, scale


def write_group_video(path: Path, truth: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Each photo for FRAMES_PER_PHOTO frames at 5 fps; returns the boxes of every frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, VIDEO_SIZE)
    expected = {}
    for name, boxes in truth.items():
        frame, scale = letterbox(cv2.imread(str(GROUP / name)))
        for _ in range(FRAMES_PER_PHOTO):
            expected[len(expected)] = boxes * scale
            writer.write(frame)
    writer.release()
    return expected


def read_boxes(path: Path) -> dict[tuple[str, int], np.ndarray]:
    """``{(source, frame): Nx4 boxes}`` from detections.csv."""
    boxes: dict[tuple[str, int], list] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            key = (row["source"], int(row["frame"]))
            boxes.setdefault(key, []).append([float(row[k]) for k in ("x1", "y1", "x2", "y2")])
    return {k: np.array(v, np.float32) for k, v in boxes.items()}


def assert_every_face_matched(found: np.ndarray | None, truth: np.ndarray, where: str) -> None:
    found = np.zeros((0, 4), np.float32) if found is None else found
    matched, extra, missed = match_boxes(found, truth, min_iou=0.5)
    assert missed == 0 and extra == 0, f"{where}: {matched} matched, {extra} extra, {missed} missed"


def test_photos_and_a_video_round_trip_through_emotion_detect(checkpoint, tmp_path):
    truth = labelled_boxes()
    video = tmp_path / "group.mp4"
    expected = write_group_video(video, truth)
    out = tmp_path / "out"
    cfg = compose_cfg("detect", [
        f"ckpt_path={checkpoint}", f"input=[{GROUP / 'voc_*.jpg'},{video}]", f"output_dir={out}",
        f"every_n_frames={FRAMES_PER_PHOTO}", "progress=false", "threads=1",
    ], tmp_path)
    with one_torch_thread():  # restores the thread count that threads=1 sets
        report = detect(cfg)
    assert not report.skipped and len(report.sources) == len(truth) + 1

    found = read_boxes(out / "detections.csv")
    for name, boxes in truth.items():
        assert_every_face_matched(found.get((str(GROUP / name), 0)), boxes, name)
        assert cv2.imread(str(out / name)).shape == cv2.imread(str(GROUP / name)).shape

    # searched every FRAMES_PER_PHOTO frames, the faces tracked in between: rows on every frame
    assert sorted(f for s, f in found if s == str(video)) == list(range(len(expected)))
    for frame in range(len(expected)):
        assert_every_face_matched(found.get((str(video), frame)), expected[frame], f"frame {frame}")
    capture = cv2.VideoCapture(str(out / "group.mp4"))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    assert (size, capture.get(cv2.CAP_PROP_FPS)) == (VIDEO_SIZE, 5.0)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == len(expected)
    capture.release()

"""Landmark-aligned crops: level eyes, FER framing, fallbacks with reasons, and where they are used."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from emotion_lightning.data import WildDataModule
from emotion_lightning.detect.tracking import Track
from emotion_lightning.faces import Detections, FaceCrop, FaceDatasetBuilder, FaceDetector
from emotion_lightning.faces.align import (
    FER_CENTRE,
    FER_EYE_DISTANCE,
    align_face,
    implausible,
)
from emotion_lightning.faces.report import COLUMNS, read_report
from emotion_lightning.images import load_image
from tests.conftest import SHARED_DATA, requires_shared
from tests.helpers import SquareFinder, photo

BOX = FaceCrop(align=False)

# an upright synthetic face on a 200 px canvas: eyes, nose, mouth corners
UPRIGHT = np.array([[70, 80], [130, 80], [100, 110], [80, 140], [120, 140]], np.float64)


def rotated_face(degrees: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A light canvas with dark eyes and mouth, rotated by ``degrees``; its landmarks and box."""
    canvas = np.full((200, 200), 200, np.uint8)
    for x, y in UPRIGHT[:2]:
        cv2.circle(canvas, (int(x), int(y)), 6, 20, -1)
    cv2.ellipse(canvas, (100, 140), (20, 5), 0, 0, 360, 20, -1)
    matrix = cv2.getRotationMatrix2D((100, 100), degrees, 1.0)
    image = cv2.warpAffine(canvas, matrix, (200, 200), borderValue=200)
    points = np.hstack([UPRIGHT, np.ones((5, 1))]) @ matrix.T
    return image, points, np.array([40, 40, 160, 160], np.float32)


def dark_blobs(gray: np.ndarray) -> list[tuple[float, float, int]]:
    """(x, y, area) of the dark regions of ``gray``, largest first."""
    count, _, stats, centres = cv2.connectedComponentsWithStats((gray < 100).astype(np.uint8))
    blobs = [(float(cx), float(cy), int(s[cv2.CC_STAT_AREA]))
             for s, (cx, cy) in zip(stats[1:count], centres[1:count], strict=True)]
    return sorted(blobs, key=lambda b: -b[2])


@pytest.mark.parametrize("degrees", [-30.0, 0.0, 25.0])
def test_a_rotated_face_comes_out_with_level_eyes_in_fer_framing(degrees):
    image, points, box = rotated_face(degrees)
    size = 96

    crop = align_face(image, box, points, size)

    assert crop.fallback is None and crop.style == "landmarks"
    assert crop.image.shape == (size, size) and crop.image.dtype == np.uint8
    top = [b for b in dark_blobs(crop.image) if b[1] < 0.5 * size][:2]
    assert len(top) == 2, "both eyes are in the upper half"
    (x1, y1, _), (x2, y2, _) = sorted(top)
    assert abs(y1 - y2) < 1.0, f"eyes at y {y1:.1f} and {y2:.1f}: not level"
    assert abs((x2 - x1) / size - FER_EYE_DISTANCE) < 0.05
    assert abs((x1 + x2) / 2 / size - FER_CENTRE[0]) < 0.03
    # the plain crop of the same rotated face keeps the tilt
    if degrees:
        plain = align_face(image, box, np.full((5, 2), np.nan), size)
        eyes = sorted(b for b in dark_blobs(plain.image) if b[1] < 0.55 * size)[:2]
        tilt = math.degrees(math.atan2(eyes[1][1] - eyes[0][1], eyes[1][0] - eyes[0][0]))
        assert abs(abs(tilt) - abs(degrees)) < 5


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda p: np.stack([200 - p[:, 1], p[:, 0]], 1), "eyes tilted"),  # turned 90 degrees
        (lambda p: p * [1, -1] + [0, 220], "mouth not below the eyes"),  # upside down
        (lambda p: p + [300, 0], "outside the face box"),
        (lambda p: np.where(np.arange(5)[:, None] == 1, [71, 81], p), "eyes too close"),
        (lambda p: p * [0.4, 1] + [60, 0], "not frontal"),  # a profile: eyes close, mouth far
        (lambda p: p * np.nan, "landmarks missing"),
    ],
)
def test_implausible_landmarks_fall_back_to_the_box_crop_and_say_why(change, reason):
    points = change(UPRIGHT.copy())
    box = np.array([40, 40, 160, 160], np.float32)
    assert reason in implausible(points, box)
    image = np.full((200, 200, 3), 120, np.uint8)
    crop = align_face(image, box, points, 48)
    assert crop.fallback is not None and reason in crop.style
    assert crop.style.startswith("box (")


class LandmarkFinder(SquareFinder):
    """SquareFinder with landmarks placed in each square like a frontal face's; squares at
    x >= 150 get vertical eyes (implausible)."""

    def _find(self, image):
        found = super()._find(image)
        points = []
        for left, top, right, _ in found.boxes:
            side = right - left
            face = np.array([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
            if left >= 150:
                face = face[:, ::-1]  # eyes above each other
            points.append([left, top] + face * side)
        return Detections(found.boxes, found.probs, np.array(points, np.float32).reshape(-1, 5, 2))


def write_raw(root, faces_by_name):
    for name, faces in faces_by_name.items():
        (root / "happy").mkdir(parents=True, exist_ok=True)
        Image.fromarray(photo(sum(map(ord, name)), faces=faces)).save(root / "happy" / name)


def test_build_with_align_records_the_crop_style_and_refuses_a_mixed_resume(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_raw(raw, {"a.png": ((40, 40, 80),), "b.png": ((170, 40, 80),)})
    builder = FaceDatasetBuilder(LandmarkFinder(), crop=FaceCrop(align=True), min_face_px=20)

    rows = {Path(r["source"]).name: r for r in builder.build(raw, out, progress=False)}

    assert rows["a.png"]["crop_style"] == "landmarks"
    assert rows["b.png"]["crop_style"].startswith("box (eyes tilted")
    assert all((out / r["crop"]).is_file() for r in rows.values())
    write_raw(raw, {"c.png": ((40, 60, 80),)})
    with pytest.raises(ValueError, match=r"crops cut by landmarks .* face_crop.align=False"):
        FaceDatasetBuilder(LandmarkFinder(), crop=BOX, min_face_px=20).build(
            raw, out, progress=False)


def test_reports_written_before_crop_style_are_read_and_resumed(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_raw(raw, {"a.png": ((40, 40, 80),)})
    FaceDatasetBuilder(SquareFinder(), crop=BOX, min_face_px=20).build(raw, out, progress=False)
    report = out / "report.csv"
    with report.open(newline="") as handle:  # drop the column, as an older version wrote it
        old = [{k: v for k, v in row.items() if k != "crop_style"} for row in csv.DictReader(handle)]
    with report.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[c for c in COLUMNS if c != "crop_style"])
        writer.writeheader()
        writer.writerows(old)
    assert read_report(report)[0]["crop_style"] == ""

    write_raw(raw, {"bb.png": ((40, 60, 80),)})
    with pytest.raises(ValueError, match=r"crops cut by box .* pass face_crop.align=False to resume"):
        FaceDatasetBuilder(SquareFinder(), min_face_px=20).build(raw, out, progress=False)
    rows = FaceDatasetBuilder(SquareFinder(), crop=BOX, min_face_px=20).build(
        raw, out, progress=False)

    assert [r["status"] for r in rows] == ["kept", "kept"]
    assert report.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert [r["crop_style"] for r in rows] == ["", "box"]


def test_wild_datamodule_keeps_aligned_and_box_crops_apart(tmp_path):
    box = WildDataModule(tmp_path, detect_faces=True, face_crop=BOX, cache_dir=tmp_path / "c")
    aligned = WildDataModule(tmp_path, detect_faces=True, cache_dir=tmp_path / "c")
    assert aligned.face_crop.align and box._crop_root() != aligned._crop_root()
    stricter = WildDataModule(tmp_path, detect_faces=True, cache_dir=tmp_path / "c",
                              face_detector=FaceDetector(min_prob=0.99))
    assert stricter._crop_root() not in (box._crop_root(), aligned._crop_root())
    assert WildDataModule(tmp_path)._crop_root() == tmp_path  # cut crops are read as they are


def test_tracked_landmarks_move_with_their_box():
    points = np.array([[30, 40], [50, 40], [40, 50], [33, 60], [47, 60]], np.float32)
    track = Track(0, np.array([20, 20, 60, 60], np.float32), 0.99, points.copy())
    track.move(np.array([30, 25, 90, 85], np.float32))  # shifted by (20, 15), 1.5x larger
    centre_old, centre_new = np.array([40, 40]), np.array([60, 55])
    np.testing.assert_allclose(track.landmarks, (points - centre_old) * 1.5 + centre_new)


@requires_shared("wild/happy")
def test_mtcnn_sees_level_eyes_in_the_aligned_crop_of_a_tilted_real_face():
    finder = FaceDetector(min_prob=0.9)
    source = sorted((SHARED_DATA / "wild" / "happy").glob("*.jpg"))[0]
    rgb = load_image(source).rgb
    centre = (rgb.shape[1] / 2, rgb.shape[0] / 2)
    tilted = cv2.warpAffine(rgb, cv2.getRotationMatrix2D(centre, 25, 1.0), rgb.shape[1::-1])
    [found] = finder.detect([tilted])
    assert len(found) >= 1, f"MTCNN found no face in {source} turned 25 degrees"

    def tilt(points):
        (x1, y1), (x2, y2) = points[0], points[1]
        return math.degrees(math.atan2(y2 - y1, x2 - x1))

    crop = align_face(tilted, found.boxes[0], found.landmarks[0], 160)
    assert crop.fallback is None
    [again] = finder.detect([np.pad(crop.image, 40)])
    assert abs(tilt(found.landmarks[0])) > 15
    assert len(again) >= 1 and abs(tilt(again.landmarks[0])) < 5

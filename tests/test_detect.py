"""EmotionDetector, drawing, input discovery and MediaAnnotator on synthetic images and videos.

A stub face finder stands in for MTCNN (which finds no faces in noise) where boxes are needed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from emotion_lightning.cli.detect import detect
from emotion_lightning.data.presets import normalize_batch
from emotion_lightning.detect import (
    FIXED_COLUMNS,
    DetectionTable,
    EmotionDetector,
    FaceEmotion,
    MediaAnnotator,
    NoTracker,
    collect_media,
    draw_faces,
)
from emotion_lightning.faces import Detections, FaceDetector, crop_face
from emotion_lightning.runtime import auto_precision
from tests.conftest import CLASSES, compose_cfg
from tests.helpers import StubFinder, video_info, write_video


def photo(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)


def read_table(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# -- EmotionDetector -----------------------------------------------------------------------
def test_batch_is_classified_in_one_forward_with_the_eval_preprocessing(classifier):
    boxes = [[10, 12, 50, 60], [80, 20, 130, 75]]
    detector = EmotionDetector(classifier, StubFinder(boxes), precision="32-true")
    calls = []
    hook = classifier.net.register_forward_hook(lambda *args: calls.append(1))
    try:
        images = [photo(seed=s) for s in range(3)]
        results = detector.detect_batch(images)
    finally:
        hook.remove()
    assert len(calls) == 1, "all faces of a batch go through the classifier together"
    assert [len(r) for r in results] == [2, 2, 2]
    crop = crop_face(images[1], np.asarray(boxes[1], np.float32), 48)
    with torch.no_grad():
        expected = classifier.predict_proba(normalize_batch([crop], 48))[0].numpy()
    face = results[1][1]
    assert isinstance(face, FaceEmotion)
    assert face.box == tuple(float(v) for v in boxes[1])
    assert list(face.probabilities) == CLASSES
    np.testing.assert_allclose(list(face.probabilities.values()), expected, atol=1e-5)
    assert face.label == CLASSES[int(np.argmax(expected))]
    assert face.confidence == pytest.approx(float(expected.max()), abs=1e-5)
    assert face.det_prob == pytest.approx(0.96)


def test_classifier_precision_follows_training_auto_choice_and_stays_close(classifier):
    boxes = [[10, 12, 50, 60], [80, 20, 130, 75]]
    images = [photo(seed=s) for s in range(2)]
    exact = EmotionDetector(classifier, StubFinder(boxes), precision="32-true")
    half = EmotionDetector(classifier, StubFinder(boxes), precision="bf16-mixed")
    for fp32, bf16 in zip(exact.detect_batch(images), half.detect_batch(images), strict=True):
        for a, b in zip(fp32, bf16, strict=True):
            np.testing.assert_allclose(list(a.probabilities.values()),
                                       list(b.probabilities.values()), atol=0.03)
    auto = EmotionDetector(classifier, StubFinder(boxes))
    expected = {"bf16-mixed": torch.bfloat16, "32-true": None}[auto_precision("cpu")[0]]
    assert auto._autocast == expected
    with pytest.raises(ValueError, match="precision must be auto or one of 32-true"):
        EmotionDetector(classifier, StubFinder(boxes), precision="fp8")


def test_detect_accepts_paths_and_annotate_draws_a_copy(classifier, tmp_path):
    image = photo()
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    detector = EmotionDetector(classifier, StubFinder([[20, 20, 70, 80]]))
    assert len(detector.detect(path)) == 1
    drawn = detector.annotate(image)
    assert drawn.shape == image.shape and not np.array_equal(drawn, image)
    assert np.array_equal(image, photo()), "the input image is never drawn on"
    empty = EmotionDetector(classifier, StubFinder(np.zeros((0, 4))))
    assert empty.detect(image) == [] and np.array_equal(empty.annotate(image), image)


def test_face_detector_max_side_searches_a_downscaled_copy(classifier, monkeypatch):
    finder = FaceDetector(max_side=80)
    seen = []

    def mtcnn(images):
        seen.extend(i.shape for i in images)
        return [Detections(np.array([[10, 10, 30, 30]], np.float32), np.array([0.99], np.float32),
                           np.full((1, 5, 2), 20, np.float32)) for _ in images]

    monkeypatch.setattr(finder, "_detect_all", mtcnn)
    (found,) = finder.detect([photo(120, 160)])
    assert seen == [(60, 80, 3)], "MTCNN saw the downscaled copy"
    assert found.boxes.tolist() == [[20, 20, 60, 60]] and (found.landmarks == 40).all()
    face = EmotionDetector(classifier, finder).detect(photo(120, 160))[0]
    assert face.box == (20.0, 20.0, 60.0, 60.0), "boxes are mapped back to the full image"
    with pytest.raises(ValueError, match="max_side"):
        FaceDetector(max_side=16)


def test_from_checkpoint_names_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        EmotionDetector.from_checkpoint(tmp_path / "missing.ckpt")


# -- drawing ---------------------------------------------------------------------------------
def face_at(box, label="happy") -> FaceEmotion:
    probs = np.full(len(CLASSES), 0.05, np.float32)
    probs[CLASSES.index(label)] = 0.8
    return FaceEmotion.from_scores(np.asarray(box, np.float32), 0.99, CLASSES, probs)


@pytest.mark.parametrize("shape", [(90, 120), (480, 640), (2160, 3840)])
def test_drawing_scales_with_the_image_and_stays_inside_it(shape):
    height, width = shape
    image = np.full((height, width, 3), 128, np.uint8)
    box = [0.3 * width, 0.3 * height, 0.5 * width, 0.6 * height]
    edge = [width - 0.1 * width, -5, width + 5, 0.2 * height]  # clipped by the image border
    drawn = draw_faces(image, [face_at(box), face_at(edge, "sad")], CLASSES)
    assert drawn.shape == image.shape
    row = int(0.45 * height)
    left = int(round(box[0]))
    changed = np.flatnonzero(np.any(drawn[row, left - 20 : left + 20] != 128, axis=1))
    line_width = changed.max() - changed.min() + 1
    assert line_width >= max(1, round(3 * max(0.4, max(shape) / 1000.0)))
    beside = drawn[int(box[1]) : int(box[3]), int(box[2]) + 2 :]
    assert (beside < 100).any(), "a darkened chart panel is drawn beside the face"
    without_bars = draw_faces(image, [face_at(box)], CLASSES, bars=False)
    assert (without_bars != 128).sum() < (drawn != 128).sum()


def test_draw_faces_accepts_gray_images():
    drawn = draw_faces(np.zeros((60, 80), np.uint8), [face_at([10, 10, 40, 40])], CLASSES)
    assert drawn.shape == (60, 80, 3)


# -- inputs ----------------------------------------------------------------------------------
def test_collect_media_expands_folders_and_globs_and_reports_bad_inputs(tmp_path):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    for name in ("a.jpg", "sub/a.jpg", "c.gif", "notes.txt", ".hidden.png", "clip.avi"):
        (root / name).write_bytes(b"x")
    (root / "out").mkdir()
    (root / "out" / "old.jpg").write_bytes(b"x")
    media, skipped = collect_media(
        [str(root), str(root / "empty"), str(tmp_path / "missing.jpg"), str(root / "notes.txt"),
         str(root / "sub" / "*.jpg"), str(tmp_path / "none*.png"), 0],
        exclude=root / "out",
    )
    names = [(m.kind, m.output_name.as_posix()) for m in media]
    assert names == [
        ("image", "a.jpg"), ("image", "c.png"), ("video", "clip.mp4"), ("image", "sub/a.jpg"),
        ("image", "a_2.jpg"), ("webcam", "webcam_0.mp4"),
    ]
    assert media[-1].source == "webcam:0"
    reasons = {Path(s.source).name: s.reason for s in skipped}
    assert set(reasons) == {"empty", "missing.jpg", "notes.txt", "none*.png"}
    assert "no images or videos" in reasons["empty"]
    assert "no such file" in reasons["missing.jpg"]
    assert "unknown file type '.txt'" in reasons["notes.txt"]


# -- MediaAnnotator: images ------------------------------------------------------------------
def write_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.jpg"
        cv2.imwrite(str(path), photo(seed=i))
        paths.append(path)
    return paths


def test_annotating_a_folder_writes_images_a_table_and_a_summary(classifier, tmp_path):
    write_images(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    detector = EmotionDetector(classifier, StubFinder([[20, 20, 70, 80], [90, 30, 140, 90]]))
    out = tmp_path / "out"
    report = MediaAnnotator(detector, out, batch_size=2, progress=False).run(str(tmp_path / "in"))
    rows = read_table(out / "detections.csv")
    assert list(rows[0]) == [*FIXED_COLUMNS, *CLASSES]
    assert len(rows) == 6 and report.faces == 6
    assert {r["source"] for r in rows} == {str(tmp_path / "in" / f"img{i}.jpg") for i in range(3)}
    first = rows[0]
    assert (first["frame"], first["timestamp"], first["face"]) == ("0", "", "0")
    assert [float(first[k]) for k in ("x1", "y1", "x2", "y2")] == [20, 20, 70, 80]
    assert sum(float(first[c]) for c in CLASSES) == pytest.approx(1.0, abs=1e-3)
    assert first["label"] == max(CLASSES, key=lambda c: float(first[c]))
    for i in range(3):
        assert cv2.imread(str(out / f"img{i}.jpg")).shape == (120, 160, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["faces"] == 6 and summary["stopped"] is None
    assert [Path(s["source"]).name for s in summary["skipped"]] == ["broken.jpg"]


def test_existing_outputs_and_inputs_are_never_overwritten_silently(classifier, tmp_path):
    [image] = write_images(tmp_path / "in", 1)
    detector = EmotionDetector(classifier, StubFinder([[20, 20, 70, 80]]))
    out = tmp_path / "out"
    MediaAnnotator(detector, out, progress=False).run(str(image))
    table = (out / "detections.csv").read_text()
    with pytest.raises(FileExistsError, match="overwrite=true"):
        MediaAnnotator(detector, out, progress=False).run(str(image))
    assert (out / "detections.csv").read_text() == table
    MediaAnnotator(detector, out, overwrite=True, progress=False).run(str(image))
    before = image.read_bytes()
    with pytest.raises(ValueError, match="overwrite the input"):
        MediaAnnotator(detector, image.parent, overwrite=True, progress=False).run(str(image))
    assert image.read_bytes() == before


def test_nothing_to_annotate_is_a_clear_error(classifier, tmp_path):
    (tmp_path / "empty").mkdir()
    detector = EmotionDetector(classifier, StubFinder([]))
    with pytest.raises(FileNotFoundError, match="no images or videos in this folder"):
        MediaAnnotator(detector, tmp_path / "out", progress=False).run(str(tmp_path / "empty"))


# -- MediaAnnotator: videos ------------------------------------------------------------------
def test_video_every_n_frames_keeps_fps_size_and_every_frame(classifier, tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=12)
    finder = StubFinder([[10, 10, 50, 60]])
    annotator = MediaAnnotator(EmotionDetector(classifier, finder), tmp_path / "out",
                               every_n_frames=3, batch_size=2, tracker=NoTracker, progress=False)
    report = annotator.run(str(video))
    rows = read_table(tmp_path / "out" / "detections.csv")
    assert [int(r["frame"]) for r in rows] == [0, 3, 6, 9]
    stamps = [float(r["timestamp"]) for r in rows]
    assert stamps == pytest.approx([0, 3 / 7, 6 / 7, 9 / 7], abs=1e-3)
    assert finder.calls == 2, "searched frames go to the detector batch_size at a time"
    assert (report.sources[0].frames, report.sources[0].searched) == (12, 4)
    assert video_info(tmp_path / "out" / "clip.mp4") == (12, pytest.approx(7.0), (96, 80))


def test_a_video_failing_midway_keeps_rows_and_frames_written_so_far(classifier, tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=10)
    finder = StubFinder([[10, 10, 50, 60]], fail_on_call=4)
    annotator = MediaAnnotator(EmotionDetector(classifier, finder), tmp_path / "out",
                               batch_size=1, progress=False)
    with pytest.raises(RuntimeError, match="detector failed") as failure:
        annotator.run(str(video))
    # the 4th detector call (frame 3) failed, in the finder; the checks below run while its
    # traceback (and so the failed run's locals, the open writers among them) is still alive
    assert finder.calls == 4 and failure.traceback[-1].name == "detect"
    rows = read_table(tmp_path / "out" / "detections.csv")
    assert [int(r["frame"]) for r in rows] == [0, 1, 2]
    assert video_info(tmp_path / "out" / "clip.mp4")[0] == 3, "the writer was closed properly"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["stopped"] == "RuntimeError: detector failed"


def test_truncated_videos_are_reported_and_annotated_as_far_as_they_read(classifier, tmp_path):
    rng = np.random.default_rng(0)
    avi = tmp_path / "cut.avi"  # MJPG: readable up to the cut, the header still says 10 frames
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 7.0, (96, 80))
    for _ in range(10):
        writer.write(rng.integers(0, 256, (80, 96, 3), np.uint8))
    writer.release()
    avi.write_bytes(avi.read_bytes()[: int(avi.stat().st_size * 0.6)])
    mp4 = tmp_path / "cut.mp4"  # MP4 keeps its index at the end: unreadable once cut
    data = write_video(tmp_path / "whole.mp4", frames=10).read_bytes()
    mp4.write_bytes(data[: len(data) // 2])
    annotator = MediaAnnotator(EmotionDetector(classifier, StubFinder([[10, 10, 50, 60]])),
                               tmp_path / "out", progress=False)
    report = annotator.run([str(mp4), str(avi)])
    assert [(s.source, "cannot open" in s.reason) for s in report.skipped] == [(str(mp4), True)]
    [cut] = report.sources
    assert 0 < cut.frames < 10 and "ended after" in cut.note
    rows = read_table(tmp_path / "out" / "detections.csv")
    assert [int(r["frame"]) for r in rows] == list(range(cut.frames))
    assert cut.output == str(tmp_path / "out" / "cut_2.mp4")  # cut.mp4 is the MP4 input's name
    assert video_info(Path(cut.output))[0] == cut.frames


# -- table and CLI ---------------------------------------------------------------------------
def test_table_refuses_class_names_that_clash_with_its_columns(tmp_path):
    with pytest.raises(ValueError, match="clash"):
        DetectionTable(tmp_path / "t.csv", ["happy", "label"])


def test_emotion_detect_cli_writes_the_contract_files(checkpoint, tmp_path):
    write_images(tmp_path / "in", 2)
    out = tmp_path / "out"
    cfg = compose_cfg("detect", [f"ckpt_path={checkpoint}", f"input={tmp_path / 'in'}",
                                 f"output_dir={out}", "progress=false"], tmp_path)
    report = detect(cfg)
    assert report.frames == 2 and not report.skipped
    with (out / "detections.csv").open() as f:
        header = next(csv.reader(f))
    fixed = len(FIXED_COLUMNS)
    assert header[:fixed] == list(FIXED_COLUMNS) and header[fixed:] == CLASSES
    assert {"source", "frame", "x1", "y1", "x2", "y2", "det_prob", "label"} <= set(header)
    assert (out / "img0.jpg").is_file() and (out / "summary.json").is_file()

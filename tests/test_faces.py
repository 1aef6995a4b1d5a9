"""Face detection quality, boxes, FER-style cropping, the face policy and robust decoding."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from emotion_lightning.faces import (
    Detections,
    FaceCrop,
    FaceDetector,
    box_iou,
    choose_face,
    crop_face,
    crop_square,
    match_boxes,
    square_box,
)
from emotion_lightning.images import UnreadableImage, as_rgb, decode_image, load_image, to_gray
from tests.conftest import SHARED_DATA, compose_cfg, requires_shared

GROUP = SHARED_DATA / "group"
WILD = SHARED_DATA / "wild"


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector(batch_size=4)


# --- detection on real photos ------------------------------------------------------------


@requires_shared("group/face_boxes_dlib.json")
def test_detector_finds_labelled_faces_in_group_photos(detector):
    """Recall >= 0.95 at IoU >= 0.5 against hand-labelled boxes, at most one false positive."""
    truth = json.loads((GROUP / "face_boxes_dlib.json").read_text())
    files = sorted(truth)
    found = detector.detect([load_image(GROUP / name).rgb for name in files])
    hits = false_positives = faces = 0
    for name, detections in zip(files, found, strict=True):
        boxes = np.array([[b["left"], b["top"], b["left"] + b["width"], b["top"] + b["height"]]
                          for b in truth[name]], dtype=np.float32)  # fmt: skip
        tp, fp, _ = match_boxes(detections.boxes, boxes, min_iou=0.5)
        hits, false_positives, faces = hits + tp, false_positives + fp, faces + len(boxes)
        assert detections.boxes.dtype == np.float32 and detections.probs.dtype == np.float32
        assert detections.landmarks.shape == (len(detections), 5, 2)
        assert np.all(detections.probs >= detector.min_prob)
        assert np.all(np.diff(detections.probs) <= 0)  # most probable first
    assert faces == 30
    assert hits / faces >= 0.95, f"recall {hits}/{faces}"
    assert false_positives <= 1


@requires_shared("group/face_boxes_dlib.json")
def test_channels_last_mtcnn_finds_the_same_faces(detector):
    """The CPU detector's NHWC networks (faster pooling) give the NCHW networks' detections."""
    nets = (detector.mtcnn.pnet, detector.mtcnn.rnet, detector.mtcnn.onet)
    assert all(net.conv1.weight.is_contiguous(memory_format=torch.channels_last) for net in nets)
    images = [load_image(path).rgb for path in sorted(GROUP.glob("voc_*.jpg"))[:2]]
    fast = detector.detect(images)
    reference = FaceDetector(batch_size=4)
    for net in (reference.mtcnn.pnet, reference.mtcnn.rnet, reference.mtcnn.onet):
        net.to(memory_format=torch.contiguous_format)
    for one, other in zip(fast, reference.detect(images), strict=True):
        assert len(one) == len(other) > 0
        np.testing.assert_allclose(one.boxes, other.boxes, atol=0.05)
        np.testing.assert_allclose(one.landmarks, other.landmarks, atol=0.05)


@requires_shared("wild")
def test_batched_detection_matches_one_by_one(detector):
    """Batches group equal sizes; the result per image does not depend on its batch."""
    paths = sorted((WILD / "surprise").glob("*.jpg"))[:3]
    images = [load_image(p).rgb for p in paths]
    images.append(images[0][:300, :200])  # another size in the same call
    images.append(to_gray(images[1]))  # gray input
    batched = detector.detect(images)
    single = [detector.detect([image])[0] for image in images]
    assert sum(len(d) for d in batched) >= 3
    for one, many in zip(single, batched, strict=True):
        np.testing.assert_allclose(one.boxes, many.boxes, atol=0.5)
        np.testing.assert_allclose(one.probs, many.probs, atol=1e-4)


def test_detector_handles_images_without_room_for_a_face(detector):
    found = detector.detect_all([np.zeros((8, 300, 3), np.uint8), np.full((64, 64), 128, np.uint8)])
    assert [len(f) for f in found] == [0, 0]
    assert found[0].boxes.shape == (0, 4)


def test_detector_rejects_bad_arguments():
    with pytest.raises(ValueError, match="min_prob"):
        FaceDetector(min_prob=1.5)
    with pytest.raises(ValueError, match="min_face_size"):
        FaceDetector(min_face_size=5)
    with pytest.raises(ValueError, match="uint8"):
        FaceDetector().detect([np.zeros((50, 50, 3), np.float32)])


# --- boxes and crops ---------------------------------------------------------------------


def test_box_iou_and_greedy_matching():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[0, 0, 10, 20], [100, 100, 110, 110]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[0.5, 0.0], [0.0, 0.0]])
    assert match_boxes(a, b, min_iou=0.5) == (1, 1, 1)
    assert match_boxes(a, b, min_iou=0.6) == (0, 2, 2)
    assert match_boxes(np.zeros((0, 4)), b) == (0, 0, 2)


def test_square_box_is_centred_on_the_longer_side():
    np.testing.assert_allclose(square_box(np.array([10, 20, 30, 60])), [0, 20, 40, 60])
    np.testing.assert_allclose(
        square_box(np.array([10, 20, 30, 60]), margin=0.5), [-10, 10, 50, 70]
    )


def test_crop_pads_at_borders_instead_of_shifting():
    image = np.arange(100, dtype=np.uint8).reshape(10, 10) + 100
    crop = crop_square(image, np.array([-2, 7, 2, 11]))  # the bottom-left corner, half outside
    assert crop.shape == (4, 4)
    np.testing.assert_array_equal(crop[:, :2], 0)  # left of the image: padding
    np.testing.assert_array_equal(crop[3:, :], 0)  # below the image: padding
    np.testing.assert_array_equal(crop[:3, 2:], image[7:10, 0:2])  # the corner stays put
    assert crop_square(image, np.array([50, 50, 60, 60])).max() == 0  # fully outside


def test_crop_face_is_a_fer_like_gray_square():
    rgb = np.zeros((200, 300, 3), np.uint8)
    rgb[50:150, 100:180] = (200, 100, 50)
    crop = crop_face(rgb, np.array([100, 50, 180, 150]))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    luma = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)  # ITU-R 601, like FER's gray
    assert abs(int(crop[24, 24]) - luma) <= 1
    assert crop[24, 0] == 0 and crop[24, 47] == 0  # square of the longer side: 10 px each side
    assert crop_face(rgb, np.array([100, 50, 180, 150]), size=64, margin=0.25).shape == (64, 64)


# --- the face policy ---------------------------------------------------------------------


def detections(*faces: tuple[float, float]) -> Detections:
    """Detections of square faces given as (side, probability), side by side."""
    boxes = np.array([[i * 200, 0, i * 200 + side, side] for i, (side, _) in enumerate(faces)])
    probs = np.array([p for _, p in faces], np.float32)
    return Detections(
        boxes.astype(np.float32).reshape(-1, 4), probs, np.zeros((len(faces), 5, 2), np.float32)
    )


@pytest.mark.parametrize(
    ("faces", "policy", "reason", "index"),
    [
        ((), "exactly_one", "no_face", None),
        (((80, 0.9),), "exactly_one", "low_probability", 0),
        (((80, 0.99),), "exactly_one", "", 0),
        (((80, 0.99), (60, 0.5)), "exactly_one", "", 0),  # the doubtful one does not count
        (((80, 0.99), (90, 0.97)), "exactly_one", "several_faces", 1),
        (((80, 0.99), (90, 0.97)), "largest", "", 1),
        (((30, 0.99),), "exactly_one", "too_small", 0),
        (((30, 0.99), (60, 0.96)), "largest", "", 1),
    ],
)
def test_choose_face(faces, policy, reason, index):
    choice = choose_face(detections(*faces), policy, min_prob=0.95, min_face_px=40)
    assert (choice.reason, choice.index, choice.kept) == (reason, index, not reason)


def test_unknown_policy_is_named():
    with pytest.raises(ValueError, match="unknown face policy 'biggest'"):
        choose_face(detections(), "biggest")


# --- decoding whatever the web serves ----------------------------------------------------


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_exif_rotation_is_applied():
    stored = np.zeros((100, 200, 3), np.uint8)
    stored[:, :20] = 255  # a bright stripe on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = decode_image(encoded(Image.fromarray(stored), "JPEG", exif=exif.tobytes()))
    assert image.rgb.shape == (200, 100, 3) and (image.width, image.height) == (100, 200)
    assert image.rgb[:20].mean() > 200 and image.rgb[-20:].mean() < 50  # the stripe is on top


def test_odd_modes_become_rgb():
    gray16 = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16))
    decoded16 = decode_image(encoded(gray16, "PNG"))
    assert (
        decoded16.rgb.dtype == np.uint8 and decoded16.rgb.max() == 255 and decoded16.rgb.min() == 0
    )

    cmyk = decode_image(encoded(Image.new("RGB", (40, 30), (255, 0, 0)).convert("CMYK"), "JPEG"))
    assert cmyk.rgb.shape == (30, 40, 3) and cmyk.rgb[15, 20, 0] > 200 and cmyk.rgb[15, 20, 1] < 60

    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[:, :5] = (0, 0, 0, 255)  # opaque black left, transparent right
    decoded = decode_image(encoded(Image.fromarray(rgba), "PNG"))
    assert decoded.rgb[5, 2].max() == 0 and decoded.rgb[5, 7].min() == 255  # on white

    frames = [Image.new("RGB", (30, 30), colour) for colour in ((0, 0, 255), (255, 255, 0))]
    gif = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    first = decode_image(gif)
    assert first.format == "GIF" and first.rgb[15, 15, 2] > 200 and first.rgb[15, 15, 0] < 50


def test_huge_images_are_downscaled_with_their_scale():
    huge = Image.new("RGB", (6000, 3000), (90, 90, 90))
    image = decode_image(encoded(huge, "JPEG"), max_side=1000)
    assert max(image.rgb.shape[:2]) == 1000 and image.rgb.shape[:2] == (500, 1000)
    assert (image.width, image.height) == (6000, 3000)
    assert image.scale == pytest.approx(1000 / 6000)
    png = decode_image(encoded(Image.new("L", (1200, 300)), "PNG"), max_side=600)
    assert png.rgb.shape == (150, 600, 3) and png.scale == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"<html>403 Forbidden</html>", "not an image"),
        (encoded(Image.new("RGB", (300, 300)), "JPEG")[:400], "truncated or corrupt"),
        (encoded(Image.new("RGB", (8, 8)), "ICO"), "unsupported format ICO"),
    ],
)
def test_unusable_files_are_named_with_a_reason(data, reason):
    with pytest.raises(UnreadableImage, match=reason) as error:
        decode_image(data, "raw/happy/bad.jpg")
    assert "raw/happy/bad.jpg" in str(error.value)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(UnreadableImage, match="cannot read file"):
        load_image(tmp_path / "gone.jpg")


def test_as_rgb_gives_three_channels_of_arrays_and_files(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert (as_rgb(gray) == gray[:, :, None]).all() and as_rgb(gray).shape == (3, 4, 3)
    rgba = np.dstack([np.stack([gray] * 3, axis=2), np.full((3, 4), 7, np.uint8)])
    assert (as_rgb(rgba) == rgba[:, :, :3]).all() and as_rgb(rgba).shape == (3, 4, 3)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert (as_rgb(tmp_path / "gray.png") == as_rgb(gray)).all()
    with pytest.raises(ValueError, match="uint8"):
        as_rgb(gray.astype(np.float32))
    with pytest.raises(TypeError, match="file path"):
        as_rgb([[0]])


@pytest.mark.parametrize(("app", "prefix", "extra"), [
    ("detect", "", ["ckpt_path=model.ckpt", "input=photo.jpg"]),
    ("faces", "", ["action=build"]),
    ("train", "data.", ["data=wild"]),
])
def test_face_detector_and_crop_groups_are_spelled_once(tmp_path, app, prefix, extra):
    """emotion-detect, emotion-faces build and data=wild read the same two groups."""
    cfg = compose_cfg(app, [*extra, f"{prefix}face_detector.min_prob=0.9",
                            f"{prefix}face_detector.max_side=640", f"{prefix}face_crop.size=64",
                            f"{prefix}face_crop.align=false"], tmp_path)
    node = cfg.data if prefix else cfg
    finder, crop = instantiate(node.face_detector), instantiate(node.face_crop)
    assert isinstance(finder, FaceDetector) and (finder.min_prob, finder.max_side) == (0.9, 640)
    assert finder._mtcnn is None, "MTCNN loads on the first detection, not in the config"
    assert crop == FaceCrop(size=64, align=False)
    image = np.zeros((100, 100, 3), np.uint8)
    cut, style = crop.cut(image, np.array([20, 20, 80, 80], np.float32), np.zeros((5, 2), np.float32))
    assert cut.shape == (64, 64) and style == "box"

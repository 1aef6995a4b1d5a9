"""emotion-faces build: raw photos -> crops + report, resumable, whatever the inputs hold."""

from __future__ import annotations

import csv
import io
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from emotion_lightning.cli import faces as faces_cli
from emotion_lightning.faces import FaceDatasetBuilder, FaceDetector
from emotion_lightning.faces.report import COLUMNS, read_report, summarize_build
from tests.conftest import SHARED_DATA, requires_shared
from tests.helpers import SquareFinder, builder, photo, save


def rows_by_source(rows):
    return {row["source"]: row for row in rows}


def test_policy_reasons_crops_and_report(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    save(raw / "happy" / "one.png", photo(1))
    save(raw / "happy" / "two.png", photo(2, faces=((20, 20, 60), (150, 100, 70))))
    save(raw / "happy" / "dim.png", photo(3, dim=True))
    save(raw / "happy" / "small.png", photo(4, faces=((60, 40, 25),)))
    save(raw / "happy" / "none.png", np.zeros((200, 200, 3), np.uint8))
    save(raw / "sadness" / "face.png", photo(5, faces=((100, 50, 100),)))  # folder alias
    (raw / "sadness" / "copy.png").write_bytes((raw / "happy" / "one.png").read_bytes())
    bigger = cv2.resize(
        photo(5, faces=((100, 50, 100),)), (640, 480), interpolation=cv2.INTER_NEAREST
    )
    save(raw / "sadness" / "resized.jpg", bigger, "JPEG", quality=95)  # a re-post, 2x

    rows = builder().build(raw, out, progress=False)

    by_source = rows_by_source(rows)
    outcome = {source: row["reason"] or row["status"] for source, row in by_source.items()}
    assert outcome == {
        "happy/dim.png": "low_probability",
        "happy/none.png": "no_face",
        "happy/one.png": "kept",
        "happy/small.png": "too_small",
        "happy/two.png": "several_faces",
        "sadness/copy.png": "duplicate",
        "sadness/face.png": "kept",
        "sadness/resized.jpg": "duplicate",
    }
    assert "same file as happy/" in by_source["sadness/copy.png"]["detail"]
    assert "same face photo" in by_source["sadness/resized.jpg"]["detail"]
    kept = by_source["sadness/face.png"]
    assert (
        kept["label"] == "sad" and kept["crop"].startswith("sad/") and kept["crop"].endswith(".png")
    )
    assert [float(kept[k]) for k in ("left", "top", "right", "bottom")] == [100, 50, 200, 150]
    assert (kept["width"], kept["height"], kept["faces"], kept["prob"]) == (
        "320",
        "240",
        "1",
        "0.9900",
    )
    crop = np.asarray(Image.open(out / kept["crop"]))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8 and crop.min() >= 150  # the face, gray
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/*.png")) == sorted(
        r["crop"] for r in rows if r["crop"]
    )
    with (out / "report.csv").open() as handle:
        assert tuple(csv.DictReader(handle).fieldnames) == COLUMNS
    table = summarize_build(rows)
    assert table.splitlines()[0].split()[:3] == ["label", "kept", "unreadable"]
    assert table.splitlines()[-1].split()[:3] == ["total", "2", "0"]


def test_largest_policy_keeps_the_main_face(tmp_path):
    raw = tmp_path / "raw"
    save(raw / "happy" / "two.png", photo(2, faces=((20, 20, 60), (150, 100, 70))))
    rows = builder(policy="largest").build(raw, tmp_path / "out", progress=False)
    assert rows[0]["status"] == "kept" and rows[0]["faces"] == "2" and rows[0]["left"] == "150.0"


def test_bad_inputs_never_stop_the_run(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    good = photo(7, faces=((100, 60, 90),))
    folder = raw / "angry"
    (folder / "zero.jpg").parent.mkdir(parents=True)
    (folder / "zero.jpg").write_bytes(b"")
    jpeg = io.BytesIO()
    Image.fromarray(good).save(jpeg, format="JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    (folder / "page.jpg").write_text("<html>not found</html>")
    save(
        folder / "cmyk.jpg",
        Image.fromarray(photo(8, faces=((100, 60, 90),))).convert("CMYK"),
        "JPEG",
    )
    deep = photo(9, faces=((100, 60, 90),))[:, :, 0].astype(np.uint16) * 257
    save(folder / "sixteen.png", Image.fromarray(deep))
    rgba = np.dstack([photo(10, faces=((100, 60, 90),)), np.full((240, 320), 255, np.uint8)])
    save(folder / "alpha.png", rgba)
    frames = [
        Image.fromarray(photo(11, faces=((100, 60, 90),))),
        Image.fromarray(photo(12, faces=((10, 10, 60), (200, 120, 80)))),
    ]
    save(folder / "animated.gif", frames[0], "GIF", save_all=True, append_images=frames[1:])
    save(
        folder / "huge.jpg",
        cv2.resize(
            photo(13, faces=((100, 60, 90),)), (4000, 3000), interpolation=cv2.INTER_NEAREST
        ),
        "JPEG",
    )
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 degrees counter-clockwise to display"
    save(folder / "rotated.jpg", photo(14, faces=((30, 100, 90),)), "JPEG", exif=exif.tobytes())
    save(folder / "dot.png", np.zeros((1, 1, 3), np.uint8))
    finder = SquareFinder()

    rows = builder(finder, max_side=1024).build(raw, out, progress=False)

    outcome = {row["source"].split("/")[1]: row["reason"] or row["status"] for row in rows}
    assert outcome == {
        "zero.jpg": "unreadable",
        "truncated.jpg": "unreadable",
        "page.jpg": "unreadable",
        "cmyk.jpg": "kept",
        "sixteen.png": "kept",
        "alpha.png": "kept",
        "animated.gif": "kept",  # the first frame
        "huge.jpg": "kept",
        "rotated.jpg": "kept",
        "dot.png": "no_face",
    }
    details = {row["source"].split("/")[1]: row["detail"] for row in rows}
    assert details["zero.jpg"] == "empty file (0 bytes)"
    assert details["truncated.jpg"].startswith("truncated or corrupt")
    assert details["page.jpg"] == "not an image file"
    assert max(max(shape) for shape in finder.seen) <= 1024  # huge photos are downscaled first
    by_name = {row["source"].split("/")[1]: row for row in rows}
    huge = by_name["huge.jpg"]  # its box is reported in the original pixels
    assert (huge["width"], huge["height"]) == ("4000", "3000")
    assert [round(float(huge[k]) / 12.5) for k in ("left", "top", "right", "bottom")] == [
        100,
        60,
        190,
        150,
    ]
    rotated = by_name["rotated.jpg"]  # EXIF-upright: 240 wide, 320 high; the face moved
    assert (rotated["width"], rotated["height"]) == ("240", "320")
    assert [float(rotated[k]) for k in ("left", "top")] == [100.0, 200.0]


def test_a_photo_that_breaks_the_detector_is_reported_alone(tmp_path):
    raw = tmp_path / "raw"
    save(raw / "sad" / "fine.png", photo(30))
    save(raw / "sad" / "odd.png", photo(31, faces=((5, 40, 60),), size=(240, 77)))

    class Fragile(SquareFinder):
        def detect_all(self, images):
            if any(image.shape[1] == 77 for image in images):
                raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
            return super().detect_all(images)

    rows = rows_by_source(builder(Fragile()).build(raw, tmp_path / "out", progress=False))
    assert rows["sad/fine.png"]["status"] == "kept"
    assert rows["sad/odd.png"]["reason"] == "detector_error"
    assert "non-empty list" in rows["sad/odd.png"]["detail"]


def test_resume_processes_only_new_photos(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "out"
    for i in range(6):
        save(raw / "surprise" / f"p{i}.png", photo(20 + i))

    class Interrupted(SquareFinder):
        def detect_all(self, images):
            if self.seen:  # Ctrl-C during the second chunk
                raise KeyboardInterrupt
            return super().detect_all(images)

    with pytest.raises(KeyboardInterrupt):
        builder(Interrupted(), chunk_size=4).build(raw, out, progress=False)
    first = read_report(out / "report.csv")
    assert len(first) == 4
    crops = {p: p.stat().st_mtime_ns for p in out.glob("*/*.png")}

    save(raw / "surprise" / "new.png", photo(40))
    finder = SquareFinder()
    rows = builder(finder).build(raw, out, progress=False)

    assert len(finder.seen) == 3  # two left over, one new: the finished four are not redone
    assert sorted(r["source"] for r in rows) == sorted(
        f"surprise/{n}" for n in [*(f"p{i}.png" for i in range(6)), "new.png"]
    )
    assert {p: p.stat().st_mtime_ns for p in crops} == crops  # finished crops untouched
    assert len(list(out.glob("*/*.png"))) == 7
    again = SquareFinder()
    builder(again).build(raw, out, progress=False)
    assert again.seen == [] and len(read_report(out / "report.csv")) == 7


def test_missing_or_empty_raw_dir_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="run emotion-scrape first"):
        builder().build(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "raw" / "happy").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images in"):
        builder().build(tmp_path / "raw", tmp_path / "out")


@requires_shared("wild", "group")
def test_cli_build_with_mtcnn_on_real_photos(tmp_path, monkeypatch, capsys):
    """The real detector end to end: one-face photos kept, a group photo dropped."""
    raw, out = tmp_path / "raw", tmp_path / "out"
    for path in sorted((SHARED_DATA / "wild" / "sad").glob("*.jpg"))[:3]:
        (raw / "sad").mkdir(parents=True, exist_ok=True)
        (raw / "sad" / path.name).symlink_to(path)
    (raw / "happy").mkdir()
    (raw / "happy" / "group.jpg").symlink_to(SHARED_DATA / "group" / "voc_2008_002506.jpg")
    (raw / "happy" / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    monkeypatch.setattr(sys, "argv", [
        "emotion-faces", "build", f"raw_dir={raw}", f"out_dir={out}", "progress=false",
        f"paths.log_dir={tmp_path / 'logs'}", "hydra/job_logging=none", "hydra/hydra_logging=none",
    ])  # fmt: skip

    faces_cli.main()

    rows = rows_by_source(read_report(out / "report.csv"))
    assert (
        rows["happy/group.jpg"]["reason"] == "several_faces"
        and rows["happy/group.jpg"]["faces"] == "3"
    )
    assert rows["happy/broken.jpg"]["reason"] == "unreadable"
    sad = [row for source, row in rows.items() if source.startswith("sad/")]
    assert [row["status"] for row in sad] == ["kept"] * 3
    assert all(float(row["prob"]) >= 0.95 for row in sad)
    for row in sad:
        crop = Image.open(out / row["crop"])
        assert crop.mode == "L" and crop.size == (48, 48)
    printed = capsys.readouterr().out
    assert "total" in printed and "several_faces" in printed


def test_cli_needs_an_action(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["emotion-faces", "bild"])
    with pytest.raises(SystemExit) as exit_info:
        faces_cli.main()
    assert (
        exit_info.value.code == 2
        and "usage: emotion-faces {build|review}" in capsys.readouterr().err
    )


def test_real_detector_constructor_is_plain_python():
    detector = FaceDetector(min_prob=0.9, min_face_size=30, batch_size=2, device="cpu")
    assert (detector.min_prob, detector.min_face_size, str(detector.device)) == (0.9, 30, "cpu")
    with pytest.raises(ValueError, match="unknown face policy"):
        FaceDatasetBuilder(detector, policy="all")

"""Bad FER2013 inputs: every one is a clear error naming file:line and the value, or is
skipped and reported; Excel's UTF-8 BOM and UTF-16 CSVs are read as the text they hold."""

from __future__ import annotations

import codecs
import logging
import re

import numpy as np
import pytest
from PIL import Image

from emotion_lightning.data import FERDataModule
from emotion_lightning.data.fer_files import FERFormatError, load_fer, read_fer_csv
from emotion_lightning.images import UnreadableImage, load_gray
from tests.conftest import fer_images, write_fer_csv, write_fer_folder
from tests.helpers import bad_links, truncated_jpeg


def test_the_shared_decoder_refuses_truncated_jpegs(tmp_path):
    path = truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(UnreadableImage, match="truncated") as error:
        load_gray(path)
    assert error.value.source == str(path)


def test_fer_folder_with_a_truncated_jpeg_names_the_file(tmp_path):
    images, labels = fer_images(2)
    root = write_fer_folder(tmp_path / "fer", images, labels, ["Training"] * len(labels))
    bad = truncated_jpeg(root / "train" / "happy" / "Training_cut.jpg")
    with pytest.raises(FERFormatError) as error:
        load_fer(root, cache_dir=None)
    message = str(error.value)
    assert message.startswith(f"{bad}: not a readable image (truncated or corrupt")
    assert "delete the file or replace it" in message


def test_fer_folder_logs_skipped_unsupported_files(tmp_path, caplog):
    images, labels = fer_images(2)
    root = write_fer_folder(tmp_path / "fer", images, labels, ["Training"] * len(labels))
    Image.new("L", (48, 48), 90).save(root / "train" / "sad" / "odd.gif")
    with caplog.at_level(logging.WARNING, "emotion_lightning.data.fer_files"):
        table = load_fer(root, cache_dir=None)
    assert len(table) == len(labels)
    assert "skipped 1 file(s) of unsupported types" in caplog.text and "odd.gif" in caplog.text




def small_csv(path, count: int = 2):
    images, labels = fer_images(count)
    return write_fer_csv(path, images, labels, ["Training"] * len(labels))


def test_a_unicode_digit_pixel_names_file_line_and_value(tmp_path):
    path = small_csv(tmp_path / "fer.csv")
    lines = path.read_text().splitlines()
    lines[3] = "3," + " ".join(["7", "\u00b2", *["0"] * 2302]) + ",Training"  # "²".isdigit()
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(FERFormatError, match=rf"^{path}:4: pixel value '\u00b2' is not an integer"):
        read_fer_csv(path)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_excel_and_notepad_encodings_are_read_directly_and_in_a_folder(tmp_path, encoding):
    plain = small_csv(tmp_path / "plain.csv")
    expected = read_fer_csv(plain)
    folder = tmp_path / "kaggle"
    folder.mkdir()
    saved = folder / "fer2013.csv"
    saved.write_text(plain.read_text(), encoding=encoding)
    assert saved.read_bytes().startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    for root in (saved, folder):
        table = load_fer(root, cache_dir=None)
        np.testing.assert_array_equal(table.images, expected.images)
        np.testing.assert_array_equal(table.labels, expected.labels)


def test_an_unclosed_quote_names_the_file_and_line(tmp_path):
    path = small_csv(tmp_path / "fer.csv", count=3)
    lines = path.read_text().splitlines()
    lines[5] = lines[5].replace(",", ',"', 1)  # the pixels field opens a quote, never closed
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(FERFormatError, match=rf"^{path}:6: .*quote"):
        read_fer_csv(path)


def test_bytes_that_are_not_text_name_the_file(tmp_path):
    path = small_csv(tmp_path / "fer.csv")
    path.write_bytes(path.read_bytes()[:40] + b"\xff\xfe\x00" + path.read_bytes()[40:])
    with pytest.raises(FERFormatError, match=rf"^{path}: not utf-8 text"):
        read_fer_csv(path)


def test_links_that_are_not_files_in_a_fer_folder_are_skipped_and_reported(tmp_path, caplog):
    images, labels = fer_images(2)
    root = write_fer_folder(tmp_path / "fer", images, labels, ["Training"] * len(labels))
    names = bad_links(root / "train" / "happy")
    with caplog.at_level(logging.WARNING, "emotion_lightning.data.fer_files"):
        table = load_fer(root, cache_dir=tmp_path / "cache")
    assert len(table) == len(labels)
    assert "skipped 3 image name(s) that are not readable files" in caplog.text
    for name, why in zip(names, ["dangling symbolic link", "symbolic link to a folder",
                                 "symbolic link loop"]):
        assert f"{name} ({why}" in caplog.text


def test_unknown_and_repeated_classes_fail_before_reading(tmp_path):
    for classes, message in ((["hapy", "sad"], "'hapy' (did you mean 'happy'?) is not an emotion"),
                             (["happy", "happiness", "sad"], "names ['happy'] more than once"),
                             (["happy"], "at least two classes")):
        with pytest.raises(ValueError, match=re.escape(message)):
            FERDataModule(tmp_path / "absent.csv", classes=classes)

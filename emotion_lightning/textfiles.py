"""Text files from users' editors: the encoding read from the byte-order mark, errors naming the file.

Excel saves CSVs as UTF-8 with a BOM, Windows Notepad and PowerShell often write UTF-16;
both are read as the text they hold. Anything else is read as UTF-8, and bytes that are not
UTF-8 fail naming the file, the byte offset and what to do.
"""

from __future__ import annotations

import codecs
import io
from pathlib import Path
from typing import TextIO

#: Byte-order marks, longest first (UTF-32 LE starts with UTF-16 LE's mark).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


class TextEncodingError(ValueError):
    """A text file whose bytes are not text in the encoding it was read with."""


def detect_encoding(path: str | Path) -> str:
    """``utf-8-sig``, ``utf-16`` or ``utf-32`` when the file starts with that BOM, else ``utf-8``."""
    with open(path, "rb") as f:
        start = f.read(4)
    return next((name for bom, name in _BOMS if start.startswith(bom)), "utf-8")


def _explain(path: Path, encoding: str, error: UnicodeDecodeError) -> TextEncodingError:
    bad = error.object[error.start:error.start + 4]
    return TextEncodingError(
        f"{path}: not {encoding} text (bytes {bad!r}); save it as UTF-8 (with or without a BOM) "
        "or as UTF-16 with a BOM"
    )


def read_text(path: str | Path) -> str:
    """The whole text of ``path`` in its encoding (see :func:`detect_encoding`)."""
    path = Path(path)
    encoding = detect_encoding(path)
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise _explain(path, encoding, error) from None


class _NamedDecodeErrors(io.TextIOWrapper):
    """A text stream whose decoding errors name the file."""

    def __next__(self) -> str:
        try:
            return super().__next__()
        except UnicodeDecodeError as error:
            raise _explain(Path(self.buffer.name), self.encoding, error) from None


def open_text(path: str | Path) -> TextIO:
    """``path`` opened for reading as text (``newline=""``, for :mod:`csv`) in its encoding."""
    encoding = detect_encoding(path)
    return _NamedDecodeErrors(open(path, "rb"), encoding=encoding, newline="")

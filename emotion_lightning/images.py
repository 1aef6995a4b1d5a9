"""Image primitives every other module builds on: decode, convert to RGB or gray, resize.

Web images come in every mode PIL knows: CMYK and 16-bit files, palettes and alpha,
animated GIFs, phone photos rotated by an EXIF tag, and photos of 50 megapixels. All of
them end up as an upright ``uint8`` RGB array whose longer side is at most ``max_side``,
or fail with :class:`UnreadableImage` saying why.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emotion_lightning.constants import LUMA_WEIGHTS

#: FER2013's image side, and the side of every face crop cut like a FER image.
FER_SIZE = 48

#: PIL formats accepted from the web, with the file extension each is stored under.
IMAGE_EXTENSIONS: dict[str, str] = {
    "JPEG": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "BMP": "bmp",
    "WEBP": "webp",
    "TIFF": "tif",
    "MPO": "jpg",
}

#: File suffixes read as images: those of the formats above.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

#: The suffixes of training images: :data:`IMAGE_SUFFIXES` without GIF (animations, palettes).
STILL_IMAGE_SUFFIXES = IMAGE_SUFFIXES - {".gif"}


class UnreadableImage(ValueError):
    """An image file that cannot be decoded; ``reason`` says why in a few words."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB image, possibly downscaled from the file's ``width`` x ``height``."""

    rgb: np.ndarray  # uint8 HxWx3
    scale: float  # rgb size / original size (1.0 when not downscaled)
    width: int  # original width after EXIF rotation
    height: int  # original height after EXIF rotation
    format: str  # PIL format name, e.g. "JPEG"


def decode_image(data: bytes, source: str = "<bytes>", max_side: int | None = None) -> DecodedImage:
    """Decode ``data`` (the bytes of an image file) into an upright RGB :class:`DecodedImage`.

    Raises :class:`UnreadableImage` naming ``source`` for empty, non-image, unsupported,
    truncated or oversized files. The first frame of an animation is used; transparent
    pixels are composited on white; 16-bit images are scaled to 8 bits.
    """
    if not data:
        raise UnreadableImage(source, "empty file (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnreadableImage(source, "not an image file") from None
    except Image.DecompressionBombError as error:
        raise UnreadableImage(source, f"too many pixels ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise UnreadableImage(source, f"truncated or corrupt ({error})") from None
    file_format = image.format
    if file_format not in IMAGE_EXTENSIONS:
        raise UnreadableImage(source, f"unsupported format {file_format}")
    original_side = max(image.size)
    if max_side and file_format in ("JPEG", "MPO") and original_side > max_side:
        image.draft("RGB", (max_side, max_side))  # decode at 1/2, 1/4 or 1/8 scale: fast and small
    try:
        image.load()
    except (OSError, ValueError, SyntaxError) as error:
        raise UnreadableImage(source, f"truncated or corrupt ({error})") from None
    image = _upright(image)
    rgb = _to_rgb_array(image)
    if max_side and max(rgb.shape[:2]) > max_side:
        factor = max_side / max(rgb.shape[:2])
        size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    scale = max(rgb.shape[:2]) / original_side
    height, width = (round(n / scale) for n in rgb.shape[:2])
    return DecodedImage(np.ascontiguousarray(rgb), scale, width, height, file_format)


def not_a_file(path: str | Path) -> str | None:
    """Why ``path``, a name listed in a folder, is not a readable file (None when it is one):
    a dangling link, a link loop, a link to a folder, a folder."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            return f"dangling symbolic link to {os.readlink(path)} (the target is missing)"
        except (OSError, RuntimeError):
            return "symbolic link loop"
        return "symbolic link to a folder" if target.is_dir() else "link to a non-file"
    if path.is_dir():
        return "a folder"
    return "not a regular file" if path.exists() else "no such file"


def load_image(path: str | Path, max_side: int | None = None) -> DecodedImage:
    """:func:`decode_image` of the file at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        odd = path.is_symlink() or path.is_dir()  # else the OS's reason says it best
        reason = (not_a_file(path) if odd else None) or f"cannot read file ({error.strerror})"
        raise UnreadableImage(str(path), reason) from None
    return decode_image(data, str(path), max_side)


def load_gray(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """uint8 HxW luma of the image at ``path``, with every check of :func:`decode_image`.

    The one way training data is read (FER folders, wild crops): a truncated JPEG raises
    :class:`UnreadableImage` instead of decoding to a partly grey picture, as
    ``cv2.imread`` does; transparent pixels are composited on white, so an RGBA image
    whose colour channels are empty keeps its shape instead of turning black.
    """
    return to_gray(load_image(path, max_side).rgb)


def as_rgb(image: np.ndarray | str | Path) -> np.ndarray:
    """uint8 HxWx3 RGB of an image file (decoded EXIF-upright) or of a uint8 array.

    Arrays may be HxW, HxWx1 (gray: repeated), HxWx3 (returned as is) or HxWx4 (alpha dropped).
    """
    if isinstance(image, (str, Path)):
        return load_image(image).rgb
    if not isinstance(image, np.ndarray):
        raise TypeError(f"expected a uint8 image array or a file path, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}; decode files with load_image")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return image[:, :, :3]
    raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 HxW luma (ITU-R BT.601) of an HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) image."""
    if image.ndim == 2:
        gray = image
    elif image.ndim == 3 and image.shape[2] == 1:
        gray = image[:, :, 0]
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        rgb = image[:, :, :3].astype(np.float32)
        gray = rgb @ np.asarray(LUMA_WEIGHTS, dtype=np.float32)
    else:
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {image.shape}")
    if gray.dtype == np.uint8:
        return gray
    if gray.dtype == np.uint16:
        return (gray / 257.0 + 0.5).astype(np.uint8)
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size x size`` with area interpolation when shrinking, cubic when growing."""
    if gray.shape[:2] == (size, size):
        return gray
    shrink = gray.shape[0] > size or gray.shape[1] > size
    return cv2.resize(
        gray, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF is common on the web and harmless
        return image


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """uint8 HxWx3 RGB of any PIL mode (first frame only)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image)
        peak = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        gray = np.clip(values.astype(np.float32) * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))

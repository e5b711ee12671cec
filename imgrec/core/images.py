"""Defensive image decoding: bytes or a path in, an upright RGB ``uint8`` array out.

Order of checks is deliberate: byte size first (free), then the format allow-list
and the pixel count from the header alone (cheap), and only then the full decode,
so a decompression bomb is refused before it costs memory.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from imgrec.core.errors import ImageError, UnsupportedFormatError
from imgrec.core.settings import Settings

# Pillow's format name -> the name we show people.  MPO is what many phones
# write for JPEG (a JPEG with extra preview frames).
ALLOWED_FORMATS = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "WEBP": "WebP",
    "BMP": "BMP",
    "GIF": "GIF",
    "TIFF": "TIFF",
}
# Pillow's openers to try; the JPEG opener also yields MPO files.
_PILLOW_OPENERS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
ACCEPTED = "JPEG, PNG, WebP, BMP, GIF, TIFF"
# File endings a picker may offer; the content, not the name, decides.
ACCEPTED_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")

# The limits when a caller gives none: the settings' defaults.
DEFAULT_MAX_BYTES = Settings.max_upload_bytes
DEFAULT_MAX_PIXELS = Settings.max_pixels


@dataclass(frozen=True)
class DecodedImage:
    pixels: np.ndarray  # (height, width, 3) uint8, upright, RGB
    format: str  # display name, e.g. "JPEG"
    width: int
    height: int
    original_mode: str  # Pillow mode before conversion, e.g. "CMYK"
    byte_size: int
    sha256: str


def decode_image(
    source: bytes | bytearray | str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DecodedImage:
    """Decode an upload or a file, refusing anything we do not accept with an ``ImageError``."""
    data = _read_bytes(source, max_bytes)
    _check_size(len(data), max_bytes)
    image = _open_allowed(data, max_pixels)
    pillow_format = image.format
    display_format = ALLOWED_FORMATS[pillow_format]
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"Image is {width}×{height} pixels ({width * height / 1e6:.1f} megapixels). "
            f"Expected at most {max_pixels / 1e6:.1f} megapixels."
        )
    original_mode = image.mode
    try:
        image.load()
        image = _upright(image)
        pixels = to_rgb_array(image)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageError(
            f"Could not decode this {display_format} file: it is truncated or corrupt ({exc}). "
            f"Expected a complete {display_format} image."
        ) from None
    return DecodedImage(
        pixels=pixels,
        format=display_format,
        width=pixels.shape[1],
        height=pixels.shape[0],
        original_mode=original_mode,
        byte_size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _read_bytes(source, max_bytes: int) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    return read_image_file(source, max_bytes)


def read_image_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """A file's bytes, refusing a missing, non-regular or oversized file before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"File not found: '{path.name}'. Expected a path to an image file.") from None
    except OSError as exc:
        raise ImageError(f"Could not read '{path.name}': {exc.strerror}.") from None
    if not path.is_file():
        raise ImageError(f"'{path.name}' is not a file. Expected an image file ({ACCEPTED}).")
    _check_size(size, max_bytes)
    return path.read_bytes()


def _check_size(size: int, max_bytes: int) -> None:
    if size == 0:
        raise ImageError(f"The file is empty (0 bytes). Expected an image ({ACCEPTED}).")
    if size > max_bytes:
        raise ImageError(
            f"File is {size / 1024 / 1024:.1f} MB. Expected at most {max_bytes / 1024 / 1024:.1f} MB."
        )


def _open_allowed(data: bytes, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        # Our own pixel limit applies after the header is read; Pillow's warning is noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data), formats=_PILLOW_OPENERS)
        except Image.DecompressionBombError as exc:
            # Pillow refuses beyond twice its own limit while reading the header; it names the size.
            found = re.search(r"\((\d+) pixels\)", str(exc))
            size = f"{int(found.group(1)) / 1e6:.1f} megapixels" if found else "too many pixels"
            raise ImageError(f"Image has {size}. Expected at most {max_pixels / 1e6:.1f} megapixels.") from None
        except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError):
            kind = sniff_kind(data)
            if kind in ALLOWED_FORMATS.values():
                raise ImageError(
                    f"Could not decode this {kind} file: its header is corrupt. Expected a complete {kind} image."
                ) from None
            raise UnsupportedFormatError(f"Unsupported image format '{kind}'. Expected one of: {ACCEPTED}.") from None


_MAGIC = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def sniff_kind(data: bytes) -> str:
    """Best guess at what a refused file is, to name it in the error message."""
    head = data[:512].lstrip().lower()
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in data[:4096].lower()):
        return "SVG"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "HTML"
    if data.startswith(b"%PDF"):
        return "PDF"
    if data.startswith(b"PK\x03\x04"):
        return "ZIP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[4:8] == b"ftyp":
        return "HEIC/MP4"
    try:
        with Image.open(io.BytesIO(data)) as other:
            return other.format or "unknown"
    except Exception:  # noqa: BLE001 - any failure just means "we cannot name it"
        pass
    try:
        data[:1024].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown binary"


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not cost the picture
        return image


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to (H, W, 3) uint8 RGB; transparency is composited on white."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "F":
            scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0
        else:
            scale = 1 / 257 if (mode.startswith("I;16") or values.max(initial=0) > 255) else 1.0
        gray = np.clip(values * scale + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha or (mode in ("L", "1", "RGB") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8).copy()
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, 3) to ``size`` = (height, width): area filter when shrinking, bilinear when growing."""
    import cv2  # imported here so that reading settings or decoding never pays for OpenCV

    height, width = size
    if pixels.shape[:2] == (height, width):
        return pixels
    shrinking = pixels.shape[0] >= height and pixels.shape[1] >= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(pixels, (width, height), interpolation=interpolation)

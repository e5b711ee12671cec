"""A catalogue of hostile and unusual uploads, each with the outcome every face must give.

Each ``Case`` makes its bytes on demand (small: the whole catalogue is well under 2 MB) and states
what must happen: accepted (a prediction is returned and logged) or refused (a clear message holding
``fragment``, and the API's status code).  ``UPLOAD_LIMIT`` is the small byte limit the tests set
through ``IMGREC_MAX_UPLOAD_BYTES`` so that the "over the limit" case stays cheap.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

UPLOAD_LIMIT = 1024 * 1024  # 1 MB: the app's uploader takes whole MB, so the test limit is one MB

# An EXIF-rotated picture is stored WIDE x TALL and shown TALL x WIDE.
EXIF_STORED_SIZE = (60, 30)  # (width, height) as stored; orientation 6 turns it to 30 wide x 60 tall
EXIF_UPRIGHT_SHAPE = (60, 30)  # (height, width) after exif_transpose


@dataclass(frozen=True)
class Expected:
    accepted: bool
    fragment: str = ""  # part of the refusal message
    status: int = 200  # the API's status for this file alone

    def describe(self, face: str = "api") -> str:
        if self.accepted:
            return "accepted: prediction" + (" (200)" if face == "api" else "")
        return f"refused{f' ({self.status})' if face == 'api' else ''}: “{self.fragment}”"


ACCEPTED = Expected(True)


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    make: Callable[[], bytes]
    expected: Expected
    note: str = ""
    # Per-face expectations that differ from ``expected`` (e.g. the API refuses the whole body with 413).
    per_face: dict = field(default_factory=dict)

    @property
    def app_filename(self) -> str:
        """The app's uploader only takes image file endings (Streamlit checks them itself, see
        ``APP_REFUSED_NAMES``), so other endings reach the page renamed to ``<name>.jpg``: the content decides."""
        ending = self.filename.rsplit(".", 1)[-1].lower()
        return self.filename if ending in ("jpg", "png", "gif", "webp", "bmp", "tiff") else self.filename + ".jpg"

    def expected_for(self, face: str) -> Expected:
        return self.per_face.get(face, self.expected)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    pixels = np.stack(
        [np.tile(x, (height, 1)), np.tile(y[:, None], (1, width)), np.full((height, width), 128, np.uint8)], -1
    )
    return Image.fromarray(pixels, "RGB")


def small_jpeg() -> bytes:
    return encode(gradient(), "JPEG", quality=90)


def small_png() -> bytes:
    return encode(gradient(), "PNG")


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header declaring huge dimensions over a tiny compressed body."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress((b"\x00" + b"\x00" * width) * 16, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def over_limit() -> bytes:
    """A real PNG of random noise (incompressible) just over ``UPLOAD_LIMIT``."""
    rng = np.random.default_rng(0)
    side = int((UPLOAD_LIMIT * 1.15 / 3) ** 0.5) + 1
    data = encode(Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)), "PNG", compress_level=1)
    assert len(data) > UPLOAD_LIMIT
    return data


def truncated_jpeg() -> bytes:
    data = encode(gradient(200, 200), "JPEG")
    return data[: len(data) // 2]


def gray16() -> bytes:
    values = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    return encode(Image.fromarray(values), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG")


def palette_transparent() -> bytes:
    image = gradient(40, 30).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


def rgba() -> bytes:
    pixels = np.zeros((30, 40, 4), np.uint8)
    pixels[..., 0] = 255
    pixels[:15, :, 3] = 255
    return encode(Image.fromarray(pixels, "RGBA"), "PNG")


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated() -> bytes:
    width, height = EXIF_STORED_SIZE
    pixels = np.full((height, width, 3), 255, np.uint8)
    pixels[:, : width // 2] = 0
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    return encode(Image.fromarray(pixels), "JPEG", exif=exif, quality=95)


SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>alert(document.cookie)</script><rect width='10' height='10'/></svg>"
)
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script><img src=x onerror=alert(2)></body></html>"
LONG_NAME = "a" * 296 + ".png"  # 300 characters: longer than a Linux file name may be (255 bytes)

CASES: tuple[Case, ...] = (
    Case("zero_byte", "empty.jpg", lambda: b"", Expected(False, "empty (0 bytes)", 422)),
    Case("text_as_jpg", "notes.jpg", lambda: b"just some notes, not a picture\n" * 4,
         Expected(False, "Unsupported image format 'text'", 415)),
    Case("svg_with_script", "drawing.svg", lambda: SVG, Expected(False, "Unsupported image format 'SVG'", 415)),
    Case("html", "page.html", lambda: HTML, Expected(False, "Unsupported image format 'HTML'", 415)),
    Case("truncated_jpeg", "cut.jpg", truncated_jpeg, Expected(False, "truncated or corrupt", 422)),
    Case("png_bomb", "bomb.png", png_bomb, Expected(False, "2500.0 megapixels", 422),
         note="50000×50000 declared in a file of a few kB; refused from the header alone"),
    Case("over_upload_limit", "big.png", over_limit, Expected(False, "Expected at most 1.0 MB", 413),
         note="limit set to 1 MB for the test; the API refuses the whole body",
         per_face={"api": Expected(False, "payload_too_large", 413)}),
    Case("one_by_one", "dot.png", lambda: encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"), ACCEPTED),
    Case("gray16_png", "gray16.png", gray16, ACCEPTED),
    Case("cmyk_jpeg", "cmyk.jpg", cmyk_jpeg, ACCEPTED),
    Case("palette_transparency_png", "palette.png", palette_transparent, ACCEPTED),
    Case("rgba_png", "rgba.png", rgba, ACCEPTED),
    Case("grayscale_png", "gray.png", lambda: encode(gradient().convert("L"), "PNG"), ACCEPTED),
    Case("animated_gif", "anim.gif", animated_gif, ACCEPTED, note="first frame is classified"),
    Case("webp", "pic.webp", lambda: encode(gradient(), "WEBP"), ACCEPTED),
    Case("tiff", "pic.tiff", lambda: encode(gradient(), "TIFF"), ACCEPTED),
    Case("bmp", "pic.bmp", lambda: encode(gradient(), "BMP"), ACCEPTED),
    Case("exif_rotated_jpeg", "rotated.jpg", exif_rotated, ACCEPTED,
         note="turned upright before prediction and Grad-CAM (shapes checked)"),
    Case("very_wide", "wide.png", lambda: encode(gradient(4000, 20), "PNG"), ACCEPTED),
    Case("jpeg_with_zip_appended", "polyglot.jpg", lambda: small_jpeg() + b"PK\x03\x04" + b"\x00" * 256, ACCEPTED),
    Case("path_traversal_name", "../../etc/passwd.jpg", lambda: encode(gradient(30, 20), "JPEG"), ACCEPTED,
         note="the name is only shown, never used on disk"),
    Case("name_with_spaces_cyrillic", "фото кота.png", lambda: encode(gradient(31, 20), "PNG"), ACCEPTED),
    Case("name_cjk", "猫.jpg", lambda: encode(gradient(32, 20), "JPEG"), ACCEPTED),
    Case("very_long_name", LONG_NAME, lambda: encode(gradient(33, 20), "PNG"), ACCEPTED,
         note="300 characters; no such file can exist on Linux, so the CLI is given the path and says so",
         per_face={"cli": Expected(False, "File name too long", 0)}),
)

FACES = ("cli", "api", "app")
# Uploaded under their own names, these never reach the Predict page: Streamlit's uploader refuses the ending.
APP_REFUSED_NAMES = ("drawing.svg", "page.html")

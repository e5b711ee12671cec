"""Every accepted format and mode decodes to upright RGB; every refusal is a clear ImageError."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgrec.core.errors import ImageError
from imgrec.core.images import ACCEPTED, decode_image, resize
from tests.helpers.hostile_inputs import encode, gradient, png_bomb


@pytest.mark.parametrize(
    "fmt, expected_name",
    [("JPEG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WebP"), ("BMP", "BMP"), ("GIF", "GIF"), ("TIFF", "TIFF")],
)
def test_each_allowed_format_decodes_to_rgb_uint8(fmt, expected_name):
    data = encode(gradient(40, 30), fmt)
    decoded = decode_image(data)
    assert decoded.format == expected_name
    assert decoded.pixels.shape == (30, 40, 3) and decoded.pixels.dtype == np.uint8
    assert (decoded.width, decoded.height) == (40, 30)
    assert decoded.byte_size == len(data)
    # Lossy or palette formats differ a little; the picture must still be the same picture.
    assert np.abs(decoded.pixels.astype(int) - np.asarray(gradient(40, 30), int)).mean() < 12


def test_path_and_bytes_give_the_same_result(tmp_path):
    data = encode(gradient(40, 30), "PNG")
    path = tmp_path / "picture.png"
    path.write_bytes(data)
    from_path, from_bytes = decode_image(path), decode_image(data)
    assert np.array_equal(from_path.pixels, from_bytes.pixels)
    assert from_path.sha256 == from_bytes.sha256


def test_rgba_is_composited_on_white():
    pixels = np.zeros((4, 4, 4), np.uint8)
    pixels[..., 0] = 255  # red...
    pixels[:2, ..., 3] = 255  # ...opaque in the top half, fully transparent below
    decoded = decode_image(encode(Image.fromarray(pixels, "RGBA"), "PNG"))
    assert decoded.original_mode == "RGBA"
    assert decoded.pixels[0, 0].tolist() == [255, 0, 0]
    assert decoded.pixels[3, 3].tolist() == [255, 255, 255]


def test_palette_with_transparency_is_composited_on_white():
    image = Image.new("P", (4, 4), 0)
    image.putpalette([0, 0, 255] + [0, 255, 0] * 255)
    image.putpixel((0, 0), 1)
    decoded = decode_image(encode(image, "PNG", transparency=0))
    assert decoded.original_mode == "P"
    assert decoded.pixels[0, 0].tolist() == [0, 255, 0]
    assert decoded.pixels[3, 3].tolist() == [255, 255, 255]  # transparent blue became white


def test_la_grayscale_with_alpha():
    image = Image.new("LA", (3, 3), (0, 0))
    image.putpixel((1, 1), (50, 255))
    decoded = decode_image(encode(image, "PNG"))
    assert decoded.pixels[1, 1].tolist() == [50, 50, 50]
    assert decoded.pixels[0, 0].tolist() == [255, 255, 255]


def test_grayscale_becomes_three_equal_channels():
    decoded = decode_image(encode(Image.new("L", (5, 5), 77), "PNG"))
    assert decoded.original_mode == "L"
    assert decoded.pixels.shape == (5, 5, 3) and (decoded.pixels == 77).all()


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    values = np.array([[0, 65535], [32768, 1000]], np.uint16)
    decoded = decode_image(encode(Image.fromarray(values), "PNG"))
    assert decoded.original_mode.startswith("I")
    assert decoded.pixels[0, 1].tolist() == [255] * 3
    assert decoded.pixels[0, 0].tolist() == [0] * 3
    assert abs(int(decoded.pixels[1, 0, 0]) - 128) <= 1


def test_cmyk_jpeg_becomes_rgb():
    image = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    decoded = decode_image(encode(image, "JPEG"))
    assert decoded.original_mode == "CMYK"
    red, green, blue = decoded.pixels[4, 4].tolist()
    assert red > 200 and green < 60 and blue < 60


def test_animated_gif_gives_the_first_frame():
    frames = [Image.new("RGB", (6, 6), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    decoded = decode_image(data)
    red, _, blue = decoded.pixels[3, 3].tolist()
    assert red > 200 and blue < 50


def test_exif_orientation_is_applied():
    # A 20x10 picture whose left half is black, stored with "rotate 90° clockwise to view" (orientation 6).
    pixels = np.full((10, 20, 3), 255, np.uint8)
    pixels[:, :10] = 0
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encode(image, "JPEG", exif=exif, quality=95))
    assert decoded.pixels.shape == (20, 10, 3)  # upright: now taller than wide
    assert decoded.pixels[2, 5].mean() < 40  # the black half is now on top
    assert decoded.pixels[17, 5].mean() > 215


def test_one_by_one_and_very_wide_images_decode():
    assert decode_image(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG")).pixels.shape == (1, 1, 3)
    assert decode_image(encode(Image.new("RGB", (4000, 20)), "PNG")).pixels.shape == (20, 4000, 3)


def test_jpeg_with_zip_appended_still_decodes_as_the_jpeg():
    data = encode(gradient(40, 30), "JPEG") + b"PK\x03\x04" + b"\x00" * 64
    assert decode_image(data).format == "JPEG"


def refusal(data, **limits) -> str:
    with pytest.raises(ImageError) as caught:
        decode_image(data, **limits)
    return str(caught.value)


def test_empty_file_is_refused():
    assert "empty (0 bytes)" in refusal(b"")


def test_text_renamed_jpg_is_refused_and_named():
    message = refusal(b"just some notes, not a picture\n")
    assert "'text'" in message and ACCEPTED in message


def test_svg_with_script_is_refused_as_svg():
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    assert refusal(svg) == f"Unsupported image format 'SVG'. Expected one of: {ACCEPTED}."


def test_html_is_refused_as_html():
    assert "'HTML'" in refusal(b"<!DOCTYPE html><html><body>hi</body></html>")


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA"])
def test_formats_outside_the_allow_list_are_refused_by_name(fmt):
    data = encode(Image.new("RGB", (16, 16)), fmt)
    assert f"'{fmt}'" in refusal(data)


def test_truncated_jpeg_is_refused():
    data = encode(gradient(200, 200), "JPEG")
    message = refusal(data[: len(data) // 2])
    assert "truncated or corrupt" in message and "JPEG" in message


def test_truncated_png_is_refused():
    data = encode(gradient(200, 200), "PNG")
    assert "PNG" in refusal(data[: len(data) // 2])


def test_corrupt_png_header_is_refused():
    data = bytearray(encode(gradient(40, 30), "PNG"))
    data[12:20] = b"\x00" * 8  # destroy the IHDR chunk
    assert "PNG" in refusal(bytes(data))


def test_decompression_bomb_is_refused_from_the_header_alone():
    data = png_bomb(50_000, 50_000)
    assert len(data) < 100_000
    assert refusal(data) == "Image has 2500.0 megapixels. Expected at most 40.0 megapixels."
    # Below Pillow's own bomb limit, our header check names the dimensions.
    assert "12000×12000 pixels" in refusal(png_bomb(12_000, 12_000))


def test_pixel_limit_comes_from_the_caller():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    assert "Expected at most 0.0 megapixels" in refusal(data, max_pixels=9_999)
    assert decode_image(data, max_pixels=10_000).pixels.shape == (100, 100, 3)


def test_byte_limit_is_checked_before_decoding(tmp_path):
    data = encode(gradient(40, 30), "BMP")
    assert "Expected at most" in refusal(data, max_bytes=len(data) - 1)
    path = tmp_path / "big.bmp"
    path.write_bytes(data)
    assert "MB" in refusal(path, max_bytes=10)


def test_missing_file_and_directory_are_refused(tmp_path):
    assert "File not found: 'nope.png'" in refusal(tmp_path / "nope.png")
    assert "is not a file" in refusal(tmp_path)


def test_resize_shrinks_and_grows_to_height_width():
    pixels = np.zeros((30, 40, 3), np.uint8)
    assert resize(pixels, (10, 20)).shape == (10, 20, 3)
    assert resize(pixels, (64, 48)).shape == (64, 48, 3)
    assert resize(pixels, (30, 40)) is pixels

"""Boxes drawn on an image, each with its class's colour and a "label score" tag (Pillow only)."""

from __future__ import annotations

import colorsys
from collections.abc import Iterable
from typing import Protocol

import numpy as np

from imgrec.core.errors import ImageError

GOLDEN_RATIO = 0.618033988749895


class LabelledBox(Protocol):
    """What ``draw_boxes`` reads of each box (a detector's ``Detection`` has these fields)."""

    label: str
    class_index: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the image's pixels


def class_colour(class_index: int) -> tuple[int, int, int]:
    """A bright colour per class, the same in every image and every face; neighbours differ in hue."""
    hue = (class_index * GOLDEN_RATIO) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(red * 255), round(green * 255), round(blue * 255)


def draw_boxes(image, boxes: Iterable[LabelledBox], *, selected: int | None = None) -> np.ndarray:
    """A copy of ``image`` (uint8 RGB array or PIL image) with every box outlined and tagged.

    ``selected`` (an index into ``boxes``) is drawn thicker, after the others, so it stays on top.
    Line width and text size follow the image's size, so tags read the same on a thumbnail and a photo.
    """
    from PIL import Image, ImageDraw, ImageFont

    canvas = image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(_pixels(image))
    canvas = canvas.copy()
    draw = ImageDraw.Draw(canvas)
    side = min(canvas.size)
    width = max(1, round(side / 200))
    font = ImageFont.load_default(size=max(10, round(side / 32)))
    boxes = list(boxes)
    order = [i for i in range(len(boxes)) if i != selected] + ([selected] if selected is not None else [])
    for i in order:
        item = boxes[i]
        colour = class_colour(item.class_index)
        x1, y1, x2, y2 = (float(v) for v in item.box)
        line = width * 2 if i == selected else width
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        text = f"{item.label} {item.score:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_height = bottom - top + 2 * width
        # Above the box when there is room, else inside its top edge.
        tag_top = y1 - tag_height if y1 - tag_height >= 0 else y1
        tag_left = min(max(0.0, x1), max(0.0, canvas.size[0] - (right - left) - 2 * width))
        draw.rectangle((tag_left, tag_top, tag_left + right - left + 2 * width, tag_top + tag_height), fill=colour)
        draw.text((tag_left + width - left, tag_top + width - top), text, font=font, fill=_text_colour(colour))
    return np.asarray(canvas)


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 140 else (255, 255, 255)


def _pixels(image) -> np.ndarray:
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ImageError(f"Image has shape {pixels.shape} and dtype {pixels.dtype}. Expected (height, width, 3) uint8 RGB.")
    return pixels

"""Results drawn on frames: a detector's boxes (``imgrec.core.drawing``) or a classifier's top labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgrec.core.drawing import class_colour, draw_boxes
from imgrec.tasks.registry import task_for

LABELS_SHOWN = 3


@dataclass(frozen=True)
class FrameBox:
    """A logged box in the shape ``draw_boxes`` reads."""

    label: str
    class_index: int
    score: float
    box: tuple[float, float, float, float]


def annotate(pixels: np.ndarray, result, card) -> np.ndarray:
    """A copy of the frame with the result drawn: boxes when the task has them, else the top labels."""
    task = task_for(card)
    boxes = task.log_boxes(result)
    if boxes is not None:
        return draw_boxes(pixels, [FrameBox(label, _class_index(card, label), score, tuple(box))
                                   for label, score, *box in boxes])
    return draw_labels(pixels, task.log_labels(result)[:LABELS_SHOWN], card)


def draw_labels(pixels: np.ndarray, labels, card) -> np.ndarray:
    """Ranked ``(label, score)`` pairs as tags down the top-left corner, each in its class's colour."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.fromarray(np.asarray(pixels, np.uint8))
    draw = ImageDraw.Draw(canvas)
    side = min(canvas.size)
    pad = max(2, round(side / 100))
    font = ImageFont.load_default(size=max(10, round(side / 18)))
    top = pad
    for label, score in labels:
        text = f"{label} {score:.0%}"
        left, text_top, right, bottom = draw.textbbox((0, 0), text, font=font)
        colour = class_colour(_class_index(card, label))
        draw.rectangle((pad, top, pad + right - left + 2 * pad, top + bottom - text_top + 2 * pad), fill=colour)
        ink = (0, 0, 0) if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 140 else (255, 255, 255)
        draw.text((2 * pad - left, top + pad - text_top), text, font=font, fill=ink)
        top += bottom - text_top + 3 * pad
    return np.asarray(canvas)


def _class_index(card, label: str) -> int:
    return card.class_names.index(label) if label in card.class_names else 0

"""Box drawing: class colours, tags, the input left alone, bad images refused."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from imgrec.core.drawing import class_colour, draw_boxes
from imgrec.core.errors import ImageError


@dataclass(frozen=True)
class Box:
    label: str
    class_index: int
    score: float
    box: tuple[float, float, float, float]


def test_boxes_are_outlined_in_their_class_colour_and_tagged():
    image = np.full((200, 300, 3), 128, np.uint8)
    boxes = [Box("dog", 16, 0.91, (40, 60, 140, 180)), Box("person", 0, 0.55, (180, 10, 290, 190))]
    drawn = draw_boxes(image, boxes)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert (image == 128).all()  # a copy: the input is untouched
    assert tuple(drawn[120, 40]) == class_colour(16)  # the dog box's left edge
    assert tuple(drawn[100, 290]) == class_colour(0)  # the person box's right edge (x2 is drawn)
    tag = drawn[50:58, 41:75]  # the dog's tag above its box: its colour with text in it
    assert (tag == class_colour(16)).all(axis=2).mean() > 0.4
    assert len(np.unique(tag.reshape(-1, 3), axis=0)) > 2
    assert (drawn[100, 90] == 128).all()  # inside a box nothing is painted
    assert class_colour(16) != class_colour(0)


def test_a_box_at_the_top_edge_gets_its_tag_inside_and_pil_images_work():
    image = Image.new("RGB", (120, 80), (10, 10, 10))
    drawn = draw_boxes(image, [Box("cat", 15, 0.5, (0, 0, 60, 40))], selected=0)
    assert tuple(drawn[1, 1]) == class_colour(15)  # the tag, inside the box
    assert tuple(drawn[39, 1]) == class_colour(15)  # the selected box: a 2-pixel edge


def test_a_bad_image_is_refused_by_name():
    with pytest.raises(ImageError, match=r"shape \(4, 4\) and dtype float64. Expected \(height, width, 3\) uint8"):
        draw_boxes(np.zeros((4, 4)), [])

"""A small detection dataset with known boxes, written in the COCO JSON, Pascal VOC XML and YOLO txt layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

# Image name, (width, height), boxes as (label in Darknet/VOC spelling, x1, y1, x2, y2) in pixels.
KNOWN_IMAGES = (
    ("street.png", (120, 80), (("person", 10, 10, 40, 70), ("dog", 60, 40, 110, 75))),
    ("living.png", (100, 100), (("tvmonitor", 20, 15, 80, 60), ("person", 5, 50, 30, 98))),
    ("garden.png", (90, 60), (("dog", 0, 20, 45, 60), ("dog", 50, 5, 85, 40), ("person", 60, 30, 88, 59))),
)
DARKNET_NAMES = ("person", "dog", "tvmonitor")  # the YOLO names file; COCO ids follow this order
COCO_LABELS = ("dog", "person", "tv")  # what the loaders give, COCO-spelled and sorted


def write_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, (width, height), _boxes) in enumerate(KNOWN_IMAGES):
        pixels = np.full((height, width, 3), 40 * index, np.uint8)
        Image.fromarray(pixels).save(folder / name)


def write_coco(root: Path) -> Path:
    """``root/annotations.json`` with images beside it in ``root/images/``."""
    write_images(root / "images")
    annotations = []
    for image_id, (_name, _size, boxes) in enumerate(KNOWN_IMAGES, start=1):
        for label, x1, y1, x2, y2 in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": DARKNET_NAMES.index(label) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    data = {
        "images": [{"id": i, "file_name": name, "width": w, "height": h}
                   for i, (name, (w, h), _b) in enumerate(KNOWN_IMAGES, start=1)],
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for i, name in enumerate(DARKNET_NAMES, start=1)],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def write_voc(root: Path) -> Path:
    write_images(root / "JPEGImages")
    (root / "Annotations").mkdir(parents=True)
    for name, (width, height), boxes in KNOWN_IMAGES:
        objects = "".join(
            f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for label, x1, y1, x2, y2 in boxes)
        (root / "Annotations" / f"{Path(name).stem}.xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{objects}</annotation>")
    return root


def write_yolo(root: Path) -> Path:
    write_images(root / "images")
    (root / "labels").mkdir(parents=True)
    (root / "obj.names").write_text("\n".join(DARKNET_NAMES) + "\n")
    for name, (width, height), boxes in KNOWN_IMAGES:
        lines = [f"{DARKNET_NAMES.index(label)} {(x1 + x2) / 2 / width!r} {(y1 + y2) / 2 / height!r} "
                 f"{(x2 - x1) / width!r} {(y2 - y1) / height!r}" for label, x1, y1, x2, y2 in boxes]
        (root / "labels" / f"{Path(name).stem}.txt").write_text("\n".join(lines) + "\n")
    return root


WRITERS = {"coco": write_coco, "voc": write_voc, "yolo": write_yolo}

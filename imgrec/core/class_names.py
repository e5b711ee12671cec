"""Class-name spellings: Darknet's and Pascal VOC's names for COCO classes, mapped to COCO's own."""

from __future__ import annotations

# Darknet's coco.names and Pascal VOC spell six COCO classes their own way; imgrec's cards and reports use COCO's.
DARKNET_TO_COCO = {
    "aeroplane": "airplane",
    "motorbike": "motorcycle",
    "sofa": "couch",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
    "tvmonitor": "tv",
}


def coco_name(name: str) -> str:
    """``name`` in COCO's spelling (names COCO already spells this way come back unchanged)."""
    return DARKNET_TO_COCO.get(name, name)

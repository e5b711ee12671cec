"""Small generated image folders whose classes a tiny model learns in a few steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": 0, "green": 1, "blue": 2}


def make_image_folder(root: Path, per_class: int = 12, size: int = 24, classes=tuple(COLOURS), seed: int = 0) -> Path:
    """Class folders of small PNGs whose dominant colour is the class: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (size, size, 3)).astype(np.uint8)
            pixels[..., COLOURS.get(name, 0)] += 150
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root

"""Small multi-label data a tiny model learns in seconds: a CIFAR-like archive of flat colours (for mosaics)
and a CSV label file over images holding one to three colour blocks."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from imgrec.datasets import loading

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 30)}


def _colour_tile(rgb, size: int, rng) -> np.ndarray:
    noise = rng.integers(-25, 25, (size, size, 3))
    return np.clip(np.asarray(rgb)[None, None, :] + noise, 0, 255).astype(np.uint8)


def write_colour_cifar(shared: Path, train_per_class: int = 8, test_per_class: int = 4) -> Path:
    """A CIFAR-10-layout archive (``cifar10/<split>/<class>/<n>.png``) whose classes are colours."""
    shared.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with tarfile.open(shared / loading.CIFAR_ARCHIVE, "w:gz") as tar:
        for split, count in (("train", train_per_class), ("test", test_per_class)):
            for name, rgb in COLOURS.items():
                for i in range(count):
                    buffer = io.BytesIO()
                    Image.fromarray(_colour_tile(rgb, 32, rng)).save(buffer, "PNG")
                    info = tarfile.TarInfo(f"cifar10/{split}/{name}/{i:04d}.png")
                    info.size = len(buffer.getvalue())
                    tar.addfile(info, io.BytesIO(buffer.getvalue()))
    return shared


def write_colour_csv(root: Path, images: int = 60, seed: int = 0, delimiter: str = ",",
                     separator: str = " ") -> Path:
    """``root/labels.csv`` (``image,labels``) and ``root/images/``: each image is four quadrants coloured by
    its one to three labels (grey where a label is repeated is never used: every quadrant is a label)."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = [f"image{delimiter}labels"]
    for index in range(images):
        picked = list(rng.choice(names, size=int(rng.integers(1, 4)), replace=False))
        cells = picked + list(rng.choice(picked, size=4 - len(picked)))
        rng.shuffle(cells)
        tiles = [_colour_tile(COLOURS[c], 12, rng) for c in cells]
        pixels = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
        Image.fromarray(pixels).save(root / "images" / f"{index:03d}.png")
        rows.append(f"{index:03d}.png{delimiter}{separator.join(sorted(picked))}")
    path = root / ("labels.tsv" if delimiter == "\t" else "labels.csv")
    path.write_text("\n".join(rows) + "\n")
    return path


MULTILABEL_TASK = "multi-label-classification"


def train_tiny_multilabel(settings, dataset: str, name: str = "tiny-multilabel", **overrides):
    """Train a tiny small-CNN multi-label model through the real trainer; returns its run."""
    from imgrec.training import trainer
    from tests.helpers.training import tiny_config

    values = dict(name=name, task=MULTILABEL_TASK, epochs=4, image_size=32, batch_size=16)
    values.update(overrides)
    return trainer.train(tiny_config(dataset, **values), settings)


def quadrant_image(top_left: str, rest: str, size: int = 64) -> np.ndarray:
    """An image holding two colour labels: ``top_left`` in one quadrant, ``rest`` in the other three."""
    pixels = np.empty((size, size, 3), np.uint8)
    pixels[:] = COLOURS[rest]
    pixels[: size // 2, : size // 2] = COLOURS[top_left]
    return pixels


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()

"""Darknet files for tests: the .weights byte layout, and a tiny real YOLO detector written as .cfg/.weights/.names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Version 0.2 and later: major, minor, revision as int32, then the images seen as int64.
WEIGHTS_HEADER = np.array([0, 2, 0], "<i4").tobytes() + np.array([0], "<i8").tobytes()

TINY_DETECTOR_CFG = """
[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=16
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1
anchors=24,24, 48,40
classes=3
num=2
"""
TINY_DETECTOR_WEIGHTS = (4 * 4 + 4 * 3 * 9) + (16 + 16 * 4)  # BN + 3x3 kernel, then the head's bias + kernel
TINY_DETECTOR_NAMES = ("person", "dog", "tvmonitor")


def weights_file(values) -> bytes:
    return WEIGHTS_HEADER + np.asarray(values, "<f4").tobytes()


def write_tiny_detector(folder: Path, seed: int = 0, names=TINY_DETECTOR_NAMES) -> tuple[Path, Path, Path]:
    """A 32×32, 3-class detector with seeded random weights: (cfg, weights, names) paths."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg, weights, names_file = folder / "tiny-yolo.cfg", folder / "tiny-yolo.weights", folder / "tiny.names"
    cfg.write_text(TINY_DETECTOR_CFG)
    values = np.random.default_rng(seed).normal(0, 0.5, TINY_DETECTOR_WEIGHTS)
    values[4 * 3 : 4 * 4] = np.abs(values[4 * 3 : 4 * 4])  # batch-norm variances are positive
    weights.write_bytes(weights_file(values))
    names_file.write_text("\n".join(names) + "\n")
    return cfg, weights, names_file

"""Rendering heatmaps: colormaps, overlays on the image, PNG bytes."""

from __future__ import annotations

import io
from functools import cache

import numpy as np

from imgrec.core.errors import ImageError, ImgrecError
from imgrec.explain.cam import Heatmap, check_image

COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma")


@cache
def _lookup_table(colormap: str) -> np.ndarray:
    from matplotlib import colormaps

    if colormap not in COLORMAPS:
        raise ImgrecError(f"Unknown colormap '{colormap}'. Expected one of: {', '.join(COLORMAPS)}.")
    table = colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(table * 255).astype(np.uint8)


def colorize(heatmap, colormap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] (or a ``Heatmap``) -> (H, W, 3) uint8 RGB through a matplotlib colormap."""
    values = heat_values(heatmap)
    indices = np.round(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).astype(np.uint8)
    return _lookup_table(colormap)[indices]


def overlay(image, heatmap, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """The colorized heatmap blended over the image: (1 - alpha) * image + alpha * colors, uint8 RGB."""
    import cv2

    pixels = check_image(image)
    if not 0.0 <= alpha <= 1.0:
        raise ImgrecError(f"alpha={alpha}. Expected a value from 0 to 1.")
    values = heat_values(heatmap)
    height, width = pixels.shape[:2]
    if values.shape != (height, width):
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    colors = colorize(values, colormap).astype(np.float32)
    blended = (1.0 - alpha) * pixels.astype(np.float32) + alpha * colors
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def to_png_bytes(array) -> bytes:
    """PNG bytes of a uint8 RGB image, a uint8 grey image, or a float heatmap in [0, 1]."""
    from PIL import Image

    values = heat_values(array) if isinstance(array, Heatmap) else np.asarray(array)
    if values.dtype != np.uint8:
        values = np.round(np.clip(np.nan_to_num(values.astype(np.float32)), 0.0, 1.0) * 255).astype(np.uint8)
    if values.ndim not in (2, 3) or (values.ndim == 3 and values.shape[2] not in (3, 4)):
        raise ImageError(
            f"Cannot write an array of shape {values.shape} as PNG. Expected (H, W), (H, W, 3) or (H, W, 4)."
        )
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(values)).save(buffer, format="PNG")
    return buffer.getvalue()


def heat_values(heatmap) -> np.ndarray:
    values = heatmap.values if isinstance(heatmap, Heatmap) else np.asarray(heatmap)
    if values.ndim != 2:
        raise ImgrecError(f"Heatmap has shape {values.shape}. Expected (height, width).")
    return values.astype(np.float32, copy=False)

"""Boxes from any classifier's Grad-CAM map: the Grad-CAM paper's weakly supervised localisation."""

from __future__ import annotations

import numpy as np

from imgrec.core.errors import ImgrecError
from imgrec.explain.render import heat_values

# Selvaraju et al. 2017, section 4.1: "we threshold the map at 15% of its max intensity" and box the
# largest connected segment.
DEFAULT_THRESHOLD = 0.15


def box_from_heatmap(heatmap, threshold: float = DEFAULT_THRESHOLD) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2) in the heatmap's pixels (the image's, for a ``Heatmap``) around the largest
    8-connected region at or above ``threshold`` × the map's peak; None for a map that is zero everywhere."""
    from scipy import ndimage

    if not 0.0 < threshold < 1.0:
        raise ImgrecError(f"threshold={threshold}. Expected a fraction of the map's peak, above 0 and below 1.")
    values = np.nan_to_num(heat_values(heatmap))
    peak = float(values.max()) if values.size else 0.0
    if peak <= 0.0:
        return None
    regions, count = ndimage.label(values >= threshold * peak, structure=np.ones((3, 3), bool))
    sizes = np.bincount(regions.ravel(), minlength=count + 1)
    sizes[0] = 0  # the background
    rows, cols = ndimage.find_objects(regions)[int(np.argmax(sizes)) - 1]
    # Pixel edges, so that a box around one pixel has width 1 (x2, y2 exclusive, as the detector's boxes).
    return cols.start, rows.start, cols.stop, rows.stop

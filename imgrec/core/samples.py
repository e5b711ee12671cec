"""Sample photos offered on the Predict page (``IMGREC_SAMPLES_DIR``)."""

from __future__ import annotations

from pathlib import Path

from imgrec.core.images import ACCEPTED_EXTENSIONS
from imgrec.core.settings import Settings


def list_samples(settings: Settings) -> dict[str, Path]:
    """File name -> path for every image-like file in the samples folder, sorted by name."""
    folder = settings.samples_dir
    if not folder.is_dir():
        return {}
    return {
        path.name: path
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower().lstrip(".") in ACCEPTED_EXTENSIONS
    }

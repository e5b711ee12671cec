"""Shared by the bench scripts: the machine's name, the sample photos, the default model and the timers.

Not a benchmark itself (``make bench`` runs it too, and it does nothing).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def machine() -> str:
    """CPU, cores, OS, Python, and the 1-minute load average (the machine may be shared)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = f"; load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}{load}")


def interleaved_median_ms(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, float]:
    """Median wall time in ms of each of ``fns``, measured side by side.

    Each round calls every candidate once, in an order that rotates from round to round, so a burst
    of someone else's load on the shared machine, or a slow drift, hits all of them alike, and no
    candidate always runs first or right after the same other one. ``warmup`` untimed rounds first.
    With one candidate it is a plain median timer.
    """
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(-warmup, rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            fns[name]()
            elapsed = (time.perf_counter() - started) * 1000
            if round_index >= 0:
                times[name].append(elapsed)
    return {name: statistics.median(values) for name, values in times.items()}


def _photo_folders() -> tuple[Path, Path]:
    from imgrec.core.settings import get_settings

    settings = get_settings()
    return settings.samples_dir, settings.shared_data_dir.parent / "photos"


def photos_dir() -> Path:
    """The sample photos: ``IMGREC_SAMPLES_DIR`` (the project's samples folder by default) when it holds
    any image, else the shared photos beside the project (``../shared/photos``) when they do."""
    from imgrec.core.samples import list_samples
    from imgrec.core.settings import Settings

    samples, shared = _photo_folders()
    if not list_samples(Settings(samples_dir=samples)) and list_samples(Settings(samples_dir=shared)):
        return shared
    return samples


def sample_photo(name: str = "cat.jpg") -> Path | None:
    """``name`` from the samples folder, else from the shared photos; ``None`` when neither has it."""
    for folder in _photo_folders():
        if (folder / name).is_file():
            return folder / name
    return None


def default_model_settings():
    """Settings under which the ImageNet default model is registered: the project's own, or a temp
    folder when the project has no version of it yet (registered there on first use)."""
    import tempfile

    from imgrec.core.settings import IMAGENET_MODEL_NAME, Settings, get_settings
    from imgrec.registry import catalog

    settings = get_settings()
    if not catalog.versions(IMAGENET_MODEL_NAME, settings):
        scratch = Path(tempfile.mkdtemp(prefix="imgrec-bench-"))
        settings = Settings(models_dir=scratch / "models", data_dir=scratch / "data")
    catalog.ensure_default_model(settings)
    return settings


def default_predictor():
    """The ImageNet default model's predictor (see :func:`default_model_settings`)."""
    from imgrec.core.settings import IMAGENET_MODEL_NAME
    from imgrec.inference.predictor import Predictor

    return Predictor.load(IMAGENET_MODEL_NAME, None, default_model_settings())

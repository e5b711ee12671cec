"""Shared by the bench scripts: the machine's name and a median timer."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def median_ms(fn, repeats: int = 30, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` in milliseconds, after a few untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def default_predictor():
    """The ImageNet default model's predictor; registered into a temp folder when the project has none yet."""
    import tempfile

    from imgrec import registry
    from imgrec.config import IMAGENET_MODEL_NAME, Settings, get_settings
    from imgrec.predict import Predictor

    settings = get_settings()
    if not registry.versions(IMAGENET_MODEL_NAME, settings):
        scratch = Path(tempfile.mkdtemp())
        settings = Settings(models_dir=scratch / "models", data_dir=scratch / "data")
    registry.ensure_default_model(settings)
    return Predictor.load(IMAGENET_MODEL_NAME, settings=settings)

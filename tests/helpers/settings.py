"""Isolated settings for tests, and the same settings as the environment a subprocess reads."""

from __future__ import annotations

from pathlib import Path

from imgrec.core.settings import PROJECT_ROOT, Settings


def shared_dir() -> Path:
    return PROJECT_ROOT.parent / "shared"


def make_settings(root: Path, **overrides) -> Settings:
    values = dict(models_dir=root / "models", data_dir=root / "data", samples_dir=root / "samples")
    values.update(overrides)
    return Settings(**values)


def settings_env(settings) -> dict[str, str]:
    return {
        "IMGREC_MODELS_DIR": str(settings.models_dir),
        "IMGREC_DATA_DIR": str(settings.data_dir),
        "IMGREC_SAMPLES_DIR": str(settings.samples_dir),
        "IMGREC_DATABASE_URL": settings.database_url,
        "IMGREC_DEFAULT_MODEL": settings.default_model,
    }


def own_models_dir(settings, root: Path) -> Path:
    """A copy of ``settings``' models folder under ``root``, for a test whose app registers models into it
    (the app's start registers the stock model; its model list, the stock detectors)."""
    import shutil

    return Path(shutil.copytree(settings.models_dir, root / "own-models"))

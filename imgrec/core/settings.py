"""Settings: one object, read from ``IMGREC_*`` environment variables.

Nothing heavy happens here, so every face (app, API, CLI) can import it cheaply.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from pathlib import Path

from imgrec.core.errors import SettingsError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_PREFIX = "IMGREC_"
MB = 1024 * 1024
# The stock ImageNet model: built from the Keras weights on first use, never committed.
IMAGENET_MODEL_NAME = "imagenet-mobilenetv2"


def _default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'imgrec.db'}"


@dataclass(frozen=True)
class Settings:
    models_dir: Path = PROJECT_ROOT / "models"
    data_dir: Path = PROJECT_ROOT / "data"
    # Empty means "SQLite file under data_dir"; see ``database_url_resolved``.
    database_url: str = ""
    samples_dir: Path = PROJECT_ROOT / "samples"
    shared_data_dir: Path = PROJECT_ROOT.parent / "shared" / "data"
    # The shipped pretrained detectors (``<folder>/<folder>.keras``), registered on first use.
    shared_detection_dir: Path = PROJECT_ROOT.parent / "shared" / "detection"
    max_upload_bytes: int = 20 * MB
    max_pixels: int = 40_000_000
    admin_token: str = ""
    default_model: str = IMAGENET_MODEL_NAME
    default_top_k: int = 5
    uncertain_threshold: float = 0.5
    keep_uploads: bool = False
    upload_retention_days: int = 30
    # Longest a prediction waits for its log write (then it is answered with a log warning).
    log_timeout_s: float = 3.0
    # The local spool for predictions the database refuses (data_dir/spool); past this, records are dropped.
    log_spool_max_bytes: int = 100 * MB
    # Longest the API waits for a request body (then 408 and the connection is closed).
    body_timeout_s: float = 30.0
    # API micro-batching.
    batch_max_size: int = 16
    batch_max_wait_ms: float = 5.0
    batch_queue_size: int = 256
    # Models the API serves for ?model= (comma-separated name or name@version); empty: every registered one.
    api_models: str = ""
    # Models kept loaded for ?model= besides the served one (least recently used goes first).
    api_resident_models: int = 2
    # How long a request waits for its ?model= to load before a 503 model_loading (the load goes on).
    api_model_load_wait_s: float = 5.0

    @property
    def database_url_resolved(self) -> str:
        return self.database_url or _default_database_url(self.data_dir)

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def active_model_file(self) -> Path:
        return self.data_dir / "active_model.json"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        return cls(**values)


def _parse(name: str, type_name: str, raw: str):
    variable = ENV_PREFIX + name.upper()
    try:
        if type_name == "Path":
            return Path(raw).expanduser()
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "bool":
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(
            f"{variable}={raw!r} is not a valid {type_name}."
            + (" Expected one of: 1, 0, true, false, yes, no." if type_name == "bool" else "")
        ) from None
    return raw


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings.from_env()

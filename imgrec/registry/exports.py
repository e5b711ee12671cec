"""The index of a model version's exports and the choice of what serves it.

Layout, beside the model::

    models/<name>/<version>/exports/<format>/...      one folder per format, swapped in atomically
    models/<name>/<version>/exports/parity.json       the parity report (``read_parity``)
    models/<name>/<version>/exports/serving.json      the serving choice (``keras`` when absent)

Only an export whose parity status is ``ok`` and whose files still match the checksums recorded at
export time can be chosen or served. ``imgrec.export`` writes this index; runtimes read it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from imgrec.core.errors import ModelError
from imgrec.core.files import sha256_file, utc_timestamp, write_atomically
from imgrec.core.settings import Settings
from imgrec.registry import catalog

EXPORTS_DIR = "exports"
PARITY_FILE = "parity.json"
SERVING_FILE = "serving.json"
KERAS = "keras"

# Format name -> (label, file inside exports/<format>/ or "" for a folder, runtime that serves it).
FORMAT_INFO: dict[str, tuple[str, str, str]] = {
    "savedmodel": ("TF SavedModel", "", "TensorFlow"),
    "tflite-fp32": ("TFLite float32", "model.tflite", "LiteRT"),
    "tflite-fp16": ("TFLite float16", "model.tflite", "LiteRT"),
    "tflite-dynamic": ("TFLite dynamic-range int8", "model.tflite", "LiteRT"),
    "tflite-int8": ("TFLite full-integer int8", "model.tflite", "LiteRT"),
    "onnx": ("ONNX (tf2onnx)", "model.onnx", "ONNX Runtime"),
}
FORMATS: tuple[str, ...] = tuple(FORMAT_INFO)

STATUS_OK, STATUS_DIVERGING, STATUS_FAILED = "ok", "diverging", "failed"


class ExportError(ModelError):
    """An export cannot be made, found or trusted; the message says which and why."""


@dataclass(frozen=True)
class ExportResult:
    format: str
    status: str  # ok / diverging / failed
    reason: str = ""  # why it diverges or failed; empty when ok
    path: str = ""  # relative to the version folder
    files: dict = field(default_factory=dict)  # relative path -> sha256, checked before serving
    size_bytes: int = 0
    figures: dict = field(default_factory=dict)  # the task's parity figures (``Task.parity``); empty if none
    headline: str = ""  # those figures on one line, written by the task
    latency_ms: float | None = None  # single image, median, on this machine
    keras_latency_ms: float | None = None  # the compiled Keras predictor, same images, same run
    runtime: str = ""
    held_out_images: int = 0
    export_seconds: float | None = None
    created: str = field(default_factory=utc_timestamp)

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def label(self) -> str:
        return FORMAT_INFO.get(self.format, (self.format,))[0]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """One line for a terminal: status, parity figures, size and latency, and the reason if any."""
        head = f"{self.format:<15} {self.status:<10}"
        if not self.figures:
            return f"{head} {self.reason}"
        figures = (f"{self.headline}  {self.size_bytes / 1e6:7.2f} MB  {self.latency_ms or 0:7.1f} ms "
                   f"(Keras {self.keras_latency_ms or 0:.1f} ms)")
        return f"{head} {figures}" + (f"  {self.reason}" if self.reason else "")

    @classmethod
    def from_dict(cls, data: dict) -> ExportResult:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def parse_formats(formats: Iterable[str] | str | None) -> list[str]:
    """Validated format names, in ``FORMATS`` order; ``None``, ``"all"`` or empty means every format."""
    if formats is None:
        return list(FORMATS)
    if isinstance(formats, str):
        formats = formats.replace(",", " ").split()
    wanted = [f.strip().lower() for f in formats if f.strip()]
    if not wanted or wanted == ["all"]:
        return list(FORMATS)
    unknown = [f for f in wanted if f not in FORMAT_INFO]
    if unknown:
        raise ExportError(f"Unknown export format(s) {', '.join(unknown)}. Expected any of: {', '.join(FORMATS)}.")
    return [f for f in FORMATS if f in wanted]


def read_parity(name: str, version: str, settings: Settings) -> dict:
    """The parity report of a model version (``{}`` when it has never been exported)."""
    path = catalog.model_dir(name, version, settings) / EXPORTS_DIR / PARITY_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"The parity report of {name}@{version} is not valid JSON ({exc}).") from None


def export_results(name: str, version: str, settings: Settings) -> list[ExportResult]:
    """The recorded export results, in ``FORMATS`` order."""
    exports = read_parity(name, version, settings).get("exports", {})
    return [ExportResult.from_dict(exports[f]) for f in FORMATS if f in exports]


def export_path(name: str, version: str, fmt: str, settings: Settings) -> Path:
    """Where an export lives (a file, or the SavedModel folder); ``ExportError`` when it is missing."""
    [fmt] = parse_formats([fmt])
    folder = catalog.model_dir(name, version, settings)
    entry = read_parity(name, version, settings).get("exports", {}).get(fmt)
    if not entry or not entry.get("path") or not (folder / entry["path"]).exists():
        raise ExportError(f"Model {name}@{version} has no {fmt} export. Run the export first.")
    return folder / entry["path"]


def verify_export(name: str, version: str, fmt: str, settings: Settings) -> Path:
    """The export's path after checking every file against the checksums recorded at export time."""
    path = export_path(name, version, fmt, settings)
    folder = catalog.model_dir(name, version, settings)
    entry = read_parity(name, version, settings)["exports"][fmt]
    for rel, digest in entry.get("files", {}).items():
        file = folder / rel
        if not file.exists():
            raise ExportError(f"Export {fmt} of {name}@{version} is missing its file '{rel}'. Export it again.")
        if sha256_file(file) != digest:
            raise ExportError(
                f"Export {fmt} of {name}@{version}: file '{rel}' changed since it was exported and checked "
                "(corrupt or replaced). Export it again."
            )
    return path


def download_bytes(name: str, version: str, fmt: str, settings: Settings) -> tuple[str, bytes]:
    """(file name, bytes) to download an export; a SavedModel folder comes as a zip."""
    path = export_path(name, version, fmt, settings)
    if path.is_file():
        return f"{name}-{version}-{fmt}{path.suffix}", path.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(path.parent).as_posix())
    return f"{name}-{version}-{fmt}.zip", buffer.getvalue()


# -- Which runtime serves a version ----------------------------------------------------------------


def check_servable(name: str, version: str, fmt: str, settings: Settings) -> None:
    entry = read_parity(name, version, settings).get("exports", {}).get(fmt)
    if entry is None:
        raise ExportError(f"Model {name}@{version} has no {fmt} export. Run the export first.")
    if entry.get("status") != STATUS_OK:
        why = entry.get("reason") or entry.get("status")
        raise ExportError(f"The {fmt} export of {name}@{version} is {entry.get('status')} ({why}); "
                                 "it cannot serve predictions.")


def serving_choices(name: str, version: str, settings: Settings) -> list[str]:
    """``keras`` and every export of this version whose parity status is ok."""
    results = export_results(name, version, settings)
    return [KERAS] + [r.format for r in results if r.ok]


def serving_backend(name: str, version: str, settings: Settings) -> str:
    """The backend chosen for a version (``keras`` unless one was set)."""
    path = catalog.model_dir(name, version, settings) / EXPORTS_DIR / SERVING_FILE
    try:
        return str(json.loads(path.read_text())["backend"])
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return KERAS


def set_serving_backend(name: str, version: str, fmt: str, settings: Settings) -> str:
    """Choose the backend that serves a version; refused unless the export exists, is ok and intact."""
    name, version = catalog.resolve(name, version, settings)
    if fmt != KERAS:
        [fmt] = parse_formats([fmt])
        check_servable(name, version, fmt, settings)
        verify_export(name, version, fmt, settings)
    path = catalog.model_dir(name, version, settings) / EXPORTS_DIR / SERVING_FILE
    write_atomically(path, json.dumps({"backend": fmt}).encode())
    catalog.publish_version(name, version, settings)
    return fmt

"""Exports of a registered model, each checked against the Keras model in a parity report.

Formats (``FORMATS``): a TensorFlow SavedModel; TFLite float32, float16, dynamic-range int8 and
full-integer int8 (post-training quantization calibrated on a representative dataset); ONNX via
tf2onnx. Every exported graph keeps the ``Preprocess`` layer, so each takes raw 0-255 RGB as a
uint8 ``(N, H, W, 3)`` batch, exactly like :class:`imgrec.inference.predictor.Predictor`.

Layout, beside the model::
    models/<name>/<version>/exports/<format>/...      one folder per format, swapped in atomically
    models/<name>/<version>/exports/parity.json       the parity report (``read_parity``)

Each export is measured against the Keras model on a held-out set that is never used for
calibration: the task's parity figures (for a classifier top-1 agreement, top-5 overlap, the
largest probability difference; see ``imgrec.tasks``), file size and single-image latency on this machine (through the runtime that serves it). An export that fails
or diverges is recorded as such with its reason; nothing is dropped from the report.

Heavy converters and runtimes (tf2onnx, onnxruntime, ai_edge_litert, TensorFlow) are imported
inside functions only, so the app and CLI can read reports cheaply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgrec.core.errors import first_line
from imgrec.core.files import sha256_file, utc_timestamp, write_atomically
from imgrec.core.images import decode_image, resize
from imgrec.core.samples import list_samples
from imgrec.core.settings import IMAGENET_MODEL_NAME, Settings
from imgrec.datasets import loading, multilabel
from imgrec.inference.predictor import Predictor
from imgrec.inference.runtimes import open_backend
from imgrec.registry import catalog
from imgrec.registry.card import MODEL_FILE, ModelCard
from imgrec.registry.catalog import training_config
from imgrec.registry.exports import (
    EXPORTS_DIR,
    FORMAT_INFO,
    FORMATS,
    PARITY_FILE,
    STATUS_DIVERGING,
    STATUS_FAILED,
    STATUS_OK,
    ExportError,
    ExportResult,
    parse_formats,
    read_parity,
)
from imgrec.tasks.registry import task_for

ONNX_OPSET = 17

HELD_OUT_IMAGES = 128
CALIBRATION_IMAGES = 128


@dataclass
class ImageSet:
    images: np.ndarray  # (N, H, W, 3) uint8 at the card's input size
    source: str  # "dataset", "sample-photos" or "generated"
    description: str


# -- Public API -------------------------------------------------------------------------------------


def export_model(
    name: str | None,
    version: str | None,
    formats: Iterable[str] | str | None,
    settings: Settings,
    progress: Callable[[str], None] | None = None,
    held_out_images: int = HELD_OUT_IMAGES,
) -> list[ExportResult]:
    """Export a registered model to ``formats`` and measure each against the Keras model.

    Returns one :class:`ExportResult` per format, in ``FORMATS`` order, also saved to
    ``exports/parity.json``. A format that cannot be produced is a ``failed`` result, not an
    exception; an unknown model or format, or an export already running, raises ``ExportError``
    or ``ModelError``.
    """
    wanted = parse_formats(formats)
    say = progress or (lambda message: None)
    name, version = catalog.resolve(name, version, settings)
    folder = catalog.model_dir(name, version, settings)
    with _export_lock(folder / EXPORTS_DIR, f"{name}@{version}"):
        say(f"Loading {name}@{version}")
        model, card = catalog.load_model(name, version, settings)
        say("Preparing held-out and calibration images")
        held_out, calibration = evaluation_data(card, settings, held_out=held_out_images)
        reference, keras_latency = _keras_reference(model, card, held_out.images)
        results = []
        with tempfile.TemporaryDirectory(prefix=".export-", dir=_ensure_dir(folder / EXPORTS_DIR)) as scratch:
            converter = _Converter(model, card, calibration, Path(scratch))
            for fmt in wanted:
                say(f"Exporting {FORMAT_INFO[fmt][0]}")
                started = time.perf_counter()
                try:
                    relative = converter.export(fmt, folder)
                except Exception as exc:  # noqa: BLE001 - a failed converter is a result to report, not a crash
                    result = ExportResult(fmt, STATUS_FAILED, reason=f"export failed: {_first_line(exc)}",
                                          runtime=FORMAT_INFO[fmt][2], keras_latency_ms=keras_latency)
                else:
                    say(f"Checking {FORMAT_INFO[fmt][0]} against Keras")
                    result = _measure(fmt, folder, relative, card, held_out, reference, keras_latency,
                                      export_seconds=time.perf_counter() - started)
                results.append(result)
                _save_report(folder, card, held_out, calibration, [result], keras_latency)
        catalog.publish_version(name, version, settings)  # with IMGREC_STORAGE_URL: the exports go to the bucket too
        return results


def check_export(
    name: str, version: str, fmt: str, settings: Settings
) -> ExportResult:
    """Measure an existing export again, as it is on disk now (after a copy, a tamper, a new runtime)."""
    [fmt] = parse_formats([fmt])
    name, version = catalog.resolve(name, version, settings)
    folder = catalog.model_dir(name, version, settings)
    previous = read_parity(name, version, settings).get("exports", {}).get(fmt)
    if previous is None or not previous.get("path"):
        raise ExportError(f"Model {name}@{version} has no {fmt} export. Run the export first.")
    model, card = catalog.load_model(name, version, settings)
    held_out, calibration = evaluation_data(card, settings)
    reference, keras_latency = _keras_reference(model, card, held_out.images)
    changed = [rel for rel, digest in previous.get("files", {}).items()
               if not (folder / rel).exists() or sha256_file(folder / rel) != digest]
    result = _measure(fmt, folder, previous["path"], card, held_out, reference, keras_latency,
                      export_seconds=previous.get("export_seconds"), recorded_files=previous.get("files"))
    if changed:
        note = f"files changed since export: {', '.join(changed)}"
        result = dataclasses.replace(result, reason=f"{result.reason}; {note}" if result.reason else note)
    _save_report(folder, card, held_out, calibration, [result], keras_latency, keep_calibration=True)
    return result


# -- Held-out and calibration images ---------------------------------------------------------------


def evaluation_data(card: ModelCard, settings: Settings,
                    held_out: int = HELD_OUT_IMAGES, calibration: int = CALIBRATION_IMAGES) -> tuple[ImageSet, ImageSet]:
    """(held-out, calibration) images for a model, disjoint, at the card's input size.

    In order of preference: the validation data of the dataset the card names (calibration from
    its validation split, held-out from its test split); the sample photos for ImageNet and COCO models
    (held-out: each photo plus flipped/cropped/brightened variants; calibration: other random crops
    of the same photos); else generated images. The descriptions say which was used.
    """
    notes = []
    try:
        found = _dataset_images(card, settings, held_out, calibration)
    except Exception as exc:  # noqa: BLE001 - fall back, but say why in the report
        found = None
        notes.append(f"dataset '{card.dataset}' unusable ({_first_line(exc)})")
    if found is None and _pretrained_on_photos(card):
        found = _photo_images(card, settings, held_out, calibration)
        if found is None:
            notes.append(f"no sample photos in {settings.samples_dir.name}/")
    if found is None:
        found = _generated_images(card, held_out, calibration)
    if notes:
        suffix = " (" + "; ".join(notes) + ")"
        found = tuple(dataclasses.replace(s, description=s.description + suffix) for s in found)
    return found


def _dataset_images(card: ModelCard, settings: Settings, held_out: int, calibration: int):
    per_class = max(2, -(-max(held_out, calibration) // max(card.num_classes, 1)))
    if task_for(card).label_sets:  # a label-set dataset, as its training run read it
        config = training_config(card.name, card.version, settings)
        if not config.get("dataset"):
            return None
        label = f"'{card.dataset}'"
        split_args = {**loading.dataset_split_args(config), "limit_per_class": per_class}  # the run's own split
        dataset = multilabel.load_multilabel_dataset(config["dataset"], settings, config.get("dataset_format", "csv"),
                                                     min_per_class=1, **split_args)
    else:
        source = _dataset_source(card, settings)
        if source is None:
            return None
        label = f"'{card.dataset}'" if source == card.dataset else f"'{card.dataset}' ({source})"
        dataset = loading.load_dataset(source, settings, limit_per_class=per_class, min_per_class=1)
    if tuple(dataset.class_names) != tuple(card.class_names):
        raise ExportError(f"its classes do not match the model card's {card.num_classes} classes")
    val = dataset.splits.get("val")
    test = dataset.splits.get("test")
    if not val or not len(val):
        raise ExportError("it has no validation split")
    if not test or not len(test):  # calibrate on one half of val, hold out the other
        order = np.random.default_rng(0).permutation(len(val))
        half = len(val) // 2
        test, val = val.subset(order[:half]), val.subset(order[half:])
        held_name = "other half of validation split"
    else:
        held_name = "test split"

    def load(split, n):
        picks = np.random.default_rng(1).permutation(len(split))[:n]
        return np.stack([split.load_image(int(i), card.input_size) for i in picks]).astype(np.uint8)

    held = load(test, held_out)
    cal = load(val, calibration)
    return (
        ImageSet(held, "dataset", f"{len(held)} images of the {held_name} of dataset {label}"),
        ImageSet(cal, "dataset", f"{len(cal)} images of the validation split of dataset {label}"),
    )


def _dataset_source(card: ModelCard, settings: Settings) -> str | None:
    """The dataset a model was trained on: the training run's config saved beside it, else the card's name."""
    for candidate in (training_config(card.name, card.version, settings).get("dataset"), card.dataset):
        if not candidate:
            continue
        if candidate in loading.BUILTIN:
            return candidate
        normalised = "".join(ch for ch in candidate.lower() if ch.isalnum())
        for key, description in loading.BUILTIN.items():
            if normalised == key.replace("_", "") or candidate == description:
                return key
        if Path(candidate).expanduser().is_dir():
            return candidate
    return None


def _pretrained_on_photos(card: ModelCard) -> bool:
    """ImageNet classifiers and COCO detectors: everyday photos are their held-out data (a detector finds
    no boxes on generated images, so they could not judge it)."""
    dataset = card.dataset.lower()
    return (card.name == IMAGENET_MODEL_NAME or (card.num_classes == 1000 and dataset.startswith("imagenet"))
            or dataset.startswith("coco"))


def _photo_images(card: ModelCard, settings: Settings, held_out: int, calibration: int):
    photos = []
    for path in list_samples(settings).values():
        try:
            photos.append(decode_image(path).pixels)
        except Exception:  # noqa: BLE001 - a sample the app refuses is not a test image either
            continue
    if not photos:
        return None
    size = card.input_size
    held = [resize(p, size) for p in photos]
    variants = (
        lambda p: resize(p[:, ::-1], size),
        lambda p: resize(_crop(p, 0.8, 0.5, 0.5), size),
        lambda p: resize(_crop(p, 0.7, 0.2, 0.8)[:, ::-1], size),
        lambda p: _scale(resize(p, size), 0.75),
        lambda p: _scale(resize(p, size), 1.2),
        lambda p: np.ascontiguousarray(np.rot90(resize(p, (size[1], size[0])))),
    )
    for variant in variants:
        held += [variant(p) for p in photos]
    held = held[: max(held_out, len(photos))]
    rng = np.random.default_rng(7)
    cal = []
    for i in range(calibration):
        photo = photos[i % len(photos)]
        crop = _crop(photo, rng.uniform(0.55, 0.95), rng.uniform(0, 1), rng.uniform(0, 1))
        cal.append(resize(crop[:, ::-1] if rng.random() < 0.5 else crop, size))
    n = len(photos)
    return (
        ImageSet(np.stack(held), "sample-photos",
                 f"{len(held)} images: the {n} sample photos and variants of them "
                 "(flipped, cropped, darker, brighter, rotated)"),
        ImageSet(np.stack(cal), "sample-photos",
                 f"{len(cal)} random crops of the same {n} sample photos (never the held-out variants)"),
    )


def _scale(pixels: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(pixels.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def _crop(pixels: np.ndarray, fraction: float, fy: float, fx: float) -> np.ndarray:
    height, width = pixels.shape[:2]
    h, w = max(1, int(height * fraction)), max(1, int(width * fraction))
    top, left = int((height - h) * fy), int((width - w) * fx)
    return np.ascontiguousarray(pixels[top : top + h, left : left + w])


def generated_images(size: tuple[int, int], n: int, seed: int) -> np.ndarray:
    """Smooth random colour images (gradients and blobs, not white noise), uint8 (n, H, W, 3)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, *size, 3), np.uint8)
    for i in range(n):
        coarse = rng.integers(0, 256, (rng.integers(2, 9), rng.integers(2, 9), 3)).astype(np.uint8)
        image = resize(coarse, size).astype(np.float32)
        image += rng.normal(0, rng.uniform(0, 20), image.shape)
        out[i] = np.clip(image, 0, 255).astype(np.uint8)
    return out


def _generated_images(card: ModelCard, held_out: int, calibration: int):
    return (
        ImageSet(generated_images(card.input_size, held_out, seed=1), "generated",
                 f"{held_out} generated images (smooth random colours; no dataset or photos for this model)"),
        ImageSet(generated_images(card.input_size, calibration, seed=2), "generated",
                 f"{calibration} generated images (other seeds than the held-out set)"),
    )


# -- Conversion ------------------------------------------------------------------------------------


class _Converter:
    """Writes each format into a hidden folder, then swaps it into ``exports/<format>``."""
    def __init__(self, model, card: ModelCard, calibration: ImageSet, scratch: Path):
        self.model = model
        self.card = card
        self.calibration = calibration
        self.scratch = scratch
        self._saved_model: Path | None = None

    def _signature(self):
        import tensorflow as tf

        return [tf.TensorSpec([None, *self.card.input_size, 3], tf.uint8, name="image")]

    def saved_model(self) -> Path:
        """A SavedModel with one uint8 ``serving_default`` signature; the source of every TFLite flavour."""
        if self._saved_model is None:
            import keras

            path = self.scratch / "saved_model"
            archive = keras.export.ExportArchive()
            archive.track(self.model)
            archive.add_endpoint("serve", lambda image: self.model(image, training=False),
                                 input_signature=self._signature())
            archive.write_out(str(path), verbose=False)
            self._saved_model = path
        return self._saved_model

    def export(self, fmt: str, folder: Path) -> str:
        final = folder / EXPORTS_DIR / fmt
        staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{fmt}-"))
        try:
            file_name = FORMAT_INFO[fmt][1]
            if fmt == "savedmodel":
                shutil.copytree(self.saved_model(), staging, dirs_exist_ok=True)
            elif fmt.startswith("tflite-"):
                (staging / file_name).write_bytes(self._tflite(fmt))
            elif fmt == "onnx":
                (staging / file_name).write_bytes(self._onnx())
            for path in [staging, *staging.rglob("*")]:
                path.chmod(0o755 if path.is_dir() else 0o644)
            _swap_in(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return (Path(EXPORTS_DIR) / fmt / file_name).as_posix().rstrip("/") if file_name else f"{EXPORTS_DIR}/{fmt}"

    def _tflite(self, fmt: str) -> bytes:
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter.from_saved_model(str(self.saved_model()))
        if fmt != "tflite-fp32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if fmt == "tflite-fp16":
            converter.target_spec.supported_types = [tf.float16]
        elif fmt == "tflite-int8":
            images = self.calibration.images

            def representative():
                for image in images:
                    yield [image[None]]

            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        with _quiet_stderr():
            return converter.convert()

    def _onnx(self) -> bytes:
        import tensorflow as tf
        import tf2onnx

        model = self.model
        function = tf.function(lambda image: model(image, training=False), input_signature=self._signature())
        with _quiet_stderr():
            proto, _ = tf2onnx.convert.from_function(function, input_signature=self._signature(), opset=ONNX_OPSET)
        return proto.SerializeToString()


def _swap_in(staging: Path, final: Path) -> None:
    """Replace ``final`` (file or folder) by ``staging``: readers see the old export or the new one."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}-old-{os.getpid()}-{time.monotonic_ns()}"
        final.rename(old)
    staging.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- Measuring -------------------------------------------------------------------------------------


def _keras_reference(model, card: ModelCard, images: np.ndarray) -> tuple[np.ndarray, float]:
    predictor = Predictor(model, card)
    reference = predictor.predict_batch(images)
    latency = median_ms(lambda: predictor.predict_batch(images[:1]))
    return reference, latency


def _measure(fmt, folder: Path, relative: str, card: ModelCard, held_out: ImageSet, reference: np.ndarray,
             keras_latency: float, export_seconds=None, recorded_files=None) -> ExportResult:
    path = folder / relative
    files = {rel: sha256_file(folder / rel) for rel in _files_of(folder, relative)}
    common = dict(path=relative, files=recorded_files or files, size_bytes=_size(path), runtime=FORMAT_INFO[fmt][2],
                  keras_latency_ms=keras_latency, held_out_images=len(held_out.images),
                  export_seconds=None if export_seconds is None else round(export_seconds, 2))
    try:
        backend = open_backend(fmt, path, card)
        outputs = backend.predict_batch(held_out.images)
        latency = median_ms(lambda: backend.predict_batch(held_out.images[:1]))
    except Exception as exc:  # noqa: BLE001 - an export its runtime cannot run is a failed export
        return ExportResult(fmt, STATUS_FAILED, reason=f"runtime failed: {_first_line(exc)}", **common)
    task = task_for(card)
    judgement = task.parity(reference, outputs, card)
    status = STATUS_OK if judgement.ok else STATUS_DIVERGING
    return ExportResult(fmt, status, reason=judgement.reason, latency_ms=latency, figures=judgement.figures,
                        headline=task.parity_headline(judgement.figures), **common)


def median_ms(fn, min_repeats: int = 5, max_repeats: int = 30, budget_s: float = 1.5, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in ms: at least ``min_repeats`` runs, more while within ``budget_s``."""
    for _ in range(warmup):
        fn()
    times = []
    started = time.perf_counter()
    while len(times) < min_repeats or (len(times) < max_repeats and time.perf_counter() - started < budget_s):
        begin = time.perf_counter()
        fn()
        times.append((time.perf_counter() - begin) * 1000)
    return round(statistics.median(times), 3)


def _files_of(folder: Path, relative: str) -> list[str]:
    path = folder / relative
    if path.is_file():
        return [relative]
    return sorted(p.relative_to(folder).as_posix() for p in path.rglob("*") if p.is_file())


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- The report ------------------------------------------------------------------------------------


def _save_report(folder: Path, card: ModelCard, held_out: ImageSet, calibration: ImageSet,
                 results: list[ExportResult], keras_latency: float, keep_calibration: bool = False) -> None:
    path = folder / EXPORTS_DIR / PARITY_FILE
    try:
        report = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        report = {}
    exports = report.get("exports", {})
    for result in results:
        exports[result.format] = result.to_dict()
    report.update(
        model=card.ref,
        updated=utc_timestamp(),
        held_out={"source": held_out.source, "images": len(held_out.images), "description": held_out.description},
        keras={"file": MODEL_FILE, "size_bytes": (folder / MODEL_FILE).stat().st_size,
               "latency_ms": keras_latency, "runtime": "Keras (compiled tf.function)"},
        thresholds=task_for(card).parity_thresholds(),
        exports={f: exports[f] for f in FORMATS if f in exports},
    )
    if not keep_calibration or "calibration" not in report:
        report["calibration"] = {"source": calibration.source, "images": len(calibration.images),
                                 "description": calibration.description, "used_by": ["tflite-int8"]}
    write_atomically(path, json.dumps(report, indent=2).encode())


# -- Small helpers ---------------------------------------------------------------------------------


def _ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _export_lock(exports_dir: Path, ref: str):
    import fcntl

    _ensure_dir(exports_dir)
    with open(exports_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError(f"An export of {ref} is already running. Wait for it to finish.") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _quiet_stderr():
    """The converters print pages of MLIR and graph logs to fd 2; keep them out of the app's log."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"

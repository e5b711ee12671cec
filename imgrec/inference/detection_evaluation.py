"""A registered detector over a labelled detection dataset through the normal Predictor, scored with pycocotools."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imgrec.core.errors import ImageError
from imgrec.core.images import decode_image
from imgrec.core.refs import ModelRef
from imgrec.core.settings import Settings
from imgrec.datasets.detection import DetectionDataset, load_detection_dataset
from imgrec.datasets.loading import dataset_location
from imgrec.inference.predictor import Predictor, image_sizes
from imgrec.inference.runtimes import MAX_BATCH
from imgrec.registry import catalog
from imgrec.tasks.base import DecodeOptions
from imgrec.tasks.detection import MAX_DETECTIONS_LIMIT
from imgrec.tasks.detection_metrics import (
    DETECTION_REPORT,
    DetectionEvaluationError,
    DetectionReport,
    evaluate_detections,
)

# COCO's usual evaluation threshold: low, so that the PR curve reaches far; every box scored counts.
DEFAULT_EVALUATION_THRESHOLD = 0.01


def evaluate_detector(predictor: Predictor, dataset: DetectionDataset, *,
                      score_threshold: float = DEFAULT_EVALUATION_THRESHOLD, best_class_only: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> DetectionReport:
    """Detections for every image of ``dataset`` (decoded as uploads are), scored against its boxes.

    By default each box gives every class over the threshold, as the Predictor serves it (Darknet's rule);
    ``best_class_only`` keeps only each box's best class before NMS (OpenCV's Darknet sample, and the rule of
    the reference figures in the shared datasets' PROVENANCE). Up to ``MAX_DETECTIONS_LIMIT`` boxes per image
    reach pycocotools, which keeps its own best 100 per image and class."""
    options = DecodeOptions(score_threshold=score_threshold, max_detections=MAX_DETECTIONS_LIMIT)
    notes = [issue.message for issue in dataset.report.issues]
    scored, detections, unreadable, resized = [], [], [], []
    for start in range(0, len(dataset.images), MAX_BATCH):
        chunk, pixels = [], []
        for image in dataset.images[start : start + MAX_BATCH]:
            try:
                decoded = decode_image(image.path)
            except ImageError:
                unreadable.append(image.path.name)
                continue
            if (decoded.width, decoded.height) != (image.width, image.height):
                resized.append(f"{image.path.name} ({decoded.width}×{decoded.height}, "
                               f"annotated {image.width}×{image.height})")
                continue
            chunk.append(image)
            pixels.append(decoded)
        if chunk:
            started = time.perf_counter()
            outputs = predictor.predict_outputs(pixels)
            if best_class_only:
                outputs = _best_class_only(outputs)
            latency_ms = (time.perf_counter() - started) * 1000 / len(pixels)
            results = predictor.decode(outputs, options, latency_ms, image_sizes(pixels))
            scored.extend(chunk)
            detections.extend(result.detections for result in results)
        if progress:
            progress(min(start + MAX_BATCH, len(dataset.images)), len(dataset.images))
    if unreadable:
        notes.append(f"{len(unreadable)} images could not be decoded and were left out: {', '.join(unreadable[:20])}.")
    if resized:
        notes.append(f"{len(resized)} images are not the size their annotation states and were left out: "
                     f"{', '.join(resized[:20])}.")
    if not scored:
        raise DetectionEvaluationError(f"None of the {len(dataset.images)} images of {dataset.source} could be "
                                       "evaluated. " + " ".join(notes))
    return evaluate_detections(scored, detections, labels=dataset.class_names, model=predictor.card.ref,
                               dataset=str(dataset.source), score_threshold=score_threshold,
                               best_class_only=best_class_only, notes=notes)


def _best_class_only(outputs: np.ndarray) -> np.ndarray:
    """Decoded rows (x1, y1, x2, y2, then one score per class) with every score but the row's best set to 0."""
    scores = outputs[..., 4:]
    best = scores.argmax(axis=-1)[..., None]
    kept = np.zeros_like(scores)
    np.put_along_axis(kept, best, np.take_along_axis(scores, best, axis=-1), axis=-1)
    return np.concatenate([outputs[..., :4], kept], axis=-1)


def evaluate_registered_detector(model_ref: str, dataset_path: str | Path, settings: Settings, *,
                                 format: str | None = None, class_map: Path | None = None,
                                 score_threshold: float = DEFAULT_EVALUATION_THRESHOLD, best_class_only: bool = False,
                                 output: Path | None = None, backend: str | None = None,
                                 progress: Callable[[int, int], None] | None = None) -> tuple[DetectionReport, Path]:
    """Evaluate a registered detector (``name`` or ``name@version``) on a dataset and save the report
    beside the model (or to ``output``); returns the report and where it was written."""
    ref = ModelRef.parse(model_ref)
    predictor = Predictor.load(ref.name, ref.version, settings, backend=backend)
    dataset = load_detection_dataset(Path(dataset_location(dataset_path, settings)), format, class_map=class_map,
                                     known_classes=predictor.card.class_names)
    report = evaluate_detector(predictor, dataset, score_threshold=score_threshold, best_class_only=best_class_only,
                               progress=progress)
    report.dataset = str(dataset_path)  # what the user named (a bucket URL, not its local copy)
    path = output or catalog.model_dir(predictor.card.name, predictor.card.version, settings) / DETECTION_REPORT
    report.save(path)
    return report, path

"""Detection metrics with pycocotools: COCO mAP@[.5:.95], mAP@0.5, per-class AP and PR curves, as a JSON report."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from imgrec.core.errors import ImgrecError
from imgrec.core.files import utc_timestamp, write_atomically

IOU_50 = 0  # index of IoU 0.5 in COCOeval's thresholds .50:.05:.95
AREA_ALL = 0  # index of the "all" area range
MAX_DETECTIONS_100 = 2  # index of maxDets=100, the one COCO's AP uses
DETECTION_REPORT = "detection_report.json"  # written beside a detector by `imgrec evaluate`


class DetectionEvaluationError(ImgrecError):
    """Ground truth and detections do not fit together for evaluation."""


@dataclass(frozen=True)
class GroundTruthBox:
    label: str  # COCO spelling
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the image's pixels
    crowd: bool = False  # neither required nor penalised (COCO iscrowd, VOC difficult)


@dataclass(frozen=True)
class GroundTruthImage:
    """One labelled image, the in-memory form every detection dataset layout loads into."""

    path: Path
    width: int
    height: int
    boxes: tuple[GroundTruthBox, ...]

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(box.label for box in self.boxes)


@dataclass(frozen=True)
class ClassAP:
    label: str
    ap: float | None  # mAP@[.5:.95] of this class; None when it has no ground truth to score
    ap50: float | None
    ground_truth: int  # boxes of this class (crowd ones not counted)
    detections: int


@dataclass
class DetectionReport:
    """What ``imgrec evaluate`` writes beside a detector: headline, per-class AP and PR curves at IoU 0.5."""

    map_50_95: float
    map_50: float
    map_75: float
    per_class: list[ClassAP]
    # label -> {"recall": [...], "precision": [...]} at IoU 0.5 (COCO's 101 recall points; precision 0 past the
    # highest recall the class reaches).
    pr_curves: dict[str, dict[str, list[float]]]
    images: int
    model: str = ""
    dataset: str = ""
    score_threshold: float | None = None
    best_class_only: bool = False  # each box gave only its best class (else every class over the threshold)
    notes: list[str] = field(default_factory=list)  # what was left out of the evaluation, and why
    created: str = field(default_factory=utc_timestamp)
    task: str = "detection"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DetectionReport:
        values = dict(data)
        values["per_class"] = [ClassAP(**row) for row in data["per_class"]]
        return cls(**values)

    def save(self, path: Path) -> None:
        write_atomically(Path(path), json.dumps(self.to_dict(), indent=2).encode())

    @classmethod
    def load(cls, path: Path) -> DetectionReport:
        return cls.from_dict(json.loads(Path(path).read_text()))


def coco_ground_truth(images: Sequence[GroundTruthImage], labels: Sequence[str]) -> dict:
    """The COCO JSON dict of ``images`` (image ids from 1 in order; category ``i`` is ``labels[i - 1]``)."""
    category_ids = {label: index for index, label in enumerate(labels, start=1)}
    annotations = []
    for image_id, image in enumerate(images, start=1):
        for box in image.boxes:
            x1, y1, x2, y2 = box.box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category_ids[box.label], "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": int(box.crowd)})
    return {
        "images": [{"id": i, "file_name": str(image.path), "width": image.width, "height": image.height}
                   for i, image in enumerate(images, start=1)],
        "categories": [{"id": i, "name": label} for label, i in category_ids.items()],
        "annotations": annotations,
    }


def coco_results(detections_per_image: Sequence[Sequence], labels: Sequence[str]) -> list[dict]:
    """COCO result rows of per-image detections (objects with ``label``, ``score``, ``box`` x1y1x2y2 in pixels);
    detections of labels outside ``labels`` are not scored."""
    category_ids = {label: index for index, label in enumerate(labels, start=1)}
    rows = []
    for image_id, detections in enumerate(detections_per_image, start=1):
        for detection in detections:
            if detection.label not in category_ids:
                continue
            x1, y1, x2, y2 = (float(v) for v in detection.box)
            rows.append({"image_id": image_id, "category_id": category_ids[detection.label],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(detection.score)})
    return rows


def evaluate_detections(images: Sequence[GroundTruthImage], detections_per_image: Sequence[Sequence], *,
                        labels: Sequence[str] | None = None, **report_fields) -> DetectionReport:
    """COCOeval of detections against ground truth. ``labels`` (default: those of the ground truth, sorted)
    are the classes scored; ``report_fields`` (model, dataset, score_threshold, notes) go into the report."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(images) != len(detections_per_image):
        raise DetectionEvaluationError(f"{len(detections_per_image)} detection lists for {len(images)} images. "
                                       "Expected one list per image.")
    if not images:
        raise DetectionEvaluationError("No images to evaluate. Expected at least one labelled image.")
    labels = list(labels if labels is not None else sorted({box.label for image in images for box in image.boxes}))
    unscored = {box.label for image in images for box in image.boxes} - set(labels)
    if unscored:
        raise DetectionEvaluationError(f"Ground-truth classes {sorted(unscored)} are not among the classes scored.")
    if not labels:
        raise DetectionEvaluationError("The ground truth holds no boxes. Expected at least one labelled box.")

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        truth = COCO()
        truth.dataset = coco_ground_truth(images, labels)
        truth.createIndex()
        results = coco_results(detections_per_image, labels)
        found = _results_object(truth, results)
        evaluation = COCOeval(truth, found, iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()

    precision = evaluation.eval["precision"]  # (IoU thresholds, recall points, classes, areas, max detections)
    recall_points = [round(float(r), 2) for r in evaluation.params.recThrs]
    per_class, curves = [], {}
    for k, label in enumerate(labels):
        category_id = k + 1
        counted = [a for a in truth.loadAnns(truth.getAnnIds(catIds=[category_id])) if not a["iscrowd"]]
        scores = precision[:, :, k, AREA_ALL, MAX_DETECTIONS_100]
        per_class.append(ClassAP(
            label=label, ap=_mean_defined(scores), ap50=_mean_defined(scores[IOU_50]), ground_truth=len(counted),
            detections=sum(1 for row in results if row["category_id"] == category_id)))
        curves[label] = {"recall": recall_points, "precision": [round(float(p), 6) for p in scores[IOU_50]]}
    return DetectionReport(map_50_95=_stat(evaluation.stats[0]), map_50=_stat(evaluation.stats[1]),
                           map_75=_stat(evaluation.stats[2]), per_class=per_class, pr_curves=curves,
                           images=len(images), **report_fields)


def _results_object(truth, results: list[dict]):
    """``truth.loadRes(results)``, which cannot take an empty list: no detections at all is a real outcome."""
    from pycocotools.coco import COCO

    if results:
        return truth.loadRes(results)
    found = COCO()
    found.dataset = {"images": truth.dataset["images"], "categories": truth.dataset["categories"],
                     "annotations": []}
    found.createIndex()
    return found


def _mean_defined(values: np.ndarray) -> float | None:
    """COCO's own averaging: precision is -1 throughout for a class without ground truth."""
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else None


def _stat(value: float) -> float:
    return max(float(value), 0.0)  # COCOeval says -1 when nothing could be scored

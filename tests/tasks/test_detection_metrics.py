"""Detection evaluation: the same report from all three layouts, equal to pycocotools' own figures; known AP values."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from imgrec.datasets.detection import load_detection_dataset
from imgrec.tasks.detection import Detection
from imgrec.tasks.detection_metrics import DetectionEvaluationError, DetectionReport, evaluate_detections
from tests.helpers.detection_data import DARKNET_NAMES, KNOWN_IMAGES, WRITERS, write_coco

COCO_SPELLING = {"tvmonitor": "tv"}


def detection(label: str, score: float, box) -> Detection:
    return Detection(label=COCO_SPELLING.get(label, label), class_index=0, score=score,
                     box=tuple(float(v) for v in box), output_index=0)


def perfect_detections(images):
    """Every ground-truth box found exactly, in the dataset's image order."""
    return [[detection(box.label, 0.9, box.box) for box in image.boxes] for image in images]


def imperfect_detections(images):
    """Shifted boxes, a false alarm and a missed box: a report with nothing trivially 0 or 1."""
    per_image = []
    for image in images:
        found = []
        for index, box in enumerate(image.boxes):
            x1, y1, x2, y2 = box.box
            if image.path.name == "garden.png" and index == 1:
                continue  # missed
            shift = 3.0 * (index + 1)
            found.append(detection(box.label, 0.95 - 0.1 * index, (x1 + shift, y1, x2 + shift, y2 - shift)))
        found.append(detection("dog", 0.5, (0, 0, 10, 10)))  # a false alarm in every image
        per_image.append(found)
    return per_image


def pycocotools_figures(annotation_file, images, detections_per_image):
    """COCOeval run directly on the annotation file, the way its documentation shows."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(annotation_file))
        ids = {image["file_name"]: image["id"] for image in truth.dataset["images"]}
        category = {name.replace("tvmonitor", "tv"): i for i, name in enumerate(DARKNET_NAMES, start=1)}
        results = [{"image_id": ids[image.path.name], "category_id": category[d.label],
                    "bbox": [d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]], "score": d.score}
                   for image, detections in zip(images, detections_per_image) for d in detections]
        evaluation = COCOeval(truth, truth.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    precision = evaluation.eval["precision"][:, :, :, 0, 2]
    per_class = {name.replace("tvmonitor", "tv"): float(np.mean(precision[:, :, k])) for k, name in
                 enumerate(DARKNET_NAMES)}
    return evaluation.stats[0], evaluation.stats[1], per_class, precision[0]


def figures(report: DetectionReport) -> tuple[list, list[float]]:
    """A report's labels and counts (compared exactly) and every number in it (compared to float noise)."""
    exact = [(row.label, row.ground_truth, row.detections) for row in report.per_class] + [report.images]
    numbers = [report.map_50_95, report.map_50, report.map_75] + [row.ap for row in report.per_class]
    numbers += [row.ap50 for row in report.per_class]
    for label, curve in sorted(report.pr_curves.items()):
        exact.append((label, curve["recall"]))
        numbers += curve["precision"]
    return exact, numbers


def test_all_three_layouts_give_the_same_report_equal_to_pycocotools_directly(tmp_path):
    reports = {}
    for layout, write in WRITERS.items():
        dataset = load_detection_dataset(write(tmp_path / layout))
        images = sorted(dataset.images, key=lambda image: image.path.name)
        reports[layout] = evaluate_detections(images, imperfect_detections(images), dataset=str(dataset.source))
    exact, numbers = figures(reports["coco"])
    for layout in ("voc", "yolo"):
        assert figures(reports[layout])[0] == exact
        assert figures(reports[layout])[1] == pytest.approx(numbers, abs=1e-9)

    report = reports["coco"]
    images = sorted(load_detection_dataset(tmp_path / "coco" / "annotations.json").images,
                    key=lambda image: image.path.name)
    map_50_95, map_50, per_class, precision_50 = pycocotools_figures(
        tmp_path / "coco" / "annotations.json", images, imperfect_detections(images))
    assert 0.05 < report.map_50_95 < report.map_50 < 0.95  # neither trivially 0 nor 1
    assert report.map_50_95 == pytest.approx(map_50_95) and report.map_50 == pytest.approx(map_50)
    assert {row.label: row.ap for row in report.per_class} == pytest.approx(per_class)
    # The PR curve at IoU 0.5 is pycocotools' precision at its 101 recall points.
    tv = [row.label for row in report.per_class].index("tv")
    tv_curve = precision_50[:, DARKNET_NAMES.index("tvmonitor")]
    assert report.pr_curves["tv"]["precision"] == pytest.approx(tv_curve.tolist(), abs=1e-6)
    assert len(report.pr_curves["tv"]["recall"]) == 101 and report.per_class[tv].ground_truth == 1


def test_perfect_detections_score_one(tmp_path):
    images = load_detection_dataset(write_coco(tmp_path)).images
    report = evaluate_detections(images, perfect_detections(images))
    assert report.map_50_95 == pytest.approx(1.0) and report.map_50 == pytest.approx(1.0)
    assert all(row.ap == pytest.approx(1.0) for row in report.per_class)


def test_known_misses_lower_ap_by_the_expected_amount(tmp_path):
    images = load_detection_dataset(write_coco(tmp_path)).images
    found = perfect_detections(images)
    # Miss street.png's person and dog: 2 of 3 found for both classes, at precision 1.
    # COCO's 101-point interpolation: precision 1 at recall points 0.00 … 0.66 (67 points), 0 after.
    street = [image.path.name for image in images].index("street.png")
    assert sorted(d.label for d in found[street]) == ["dog", "person"]
    found[street] = []
    report = evaluate_detections(images, found)
    ap = {row.label: row.ap for row in report.per_class}
    assert ap == pytest.approx({"dog": 67 / 101, "person": 67 / 101, "tv": 1.0})
    assert report.map_50 == pytest.approx((2 * 67 / 101 + 1) / 3)


def test_no_detections_score_zero_and_mismatched_inputs_are_refused(tmp_path):
    images = load_detection_dataset(write_coco(tmp_path)).images
    report = evaluate_detections(images, [[] for _ in images])
    assert report.map_50_95 == 0.0 and all(row.ap == 0.0 and row.detections == 0 for row in report.per_class)
    with pytest.raises(DetectionEvaluationError, match="2 detection lists for 3 images"):
        evaluate_detections(images, [[], []])


def test_a_report_survives_its_json(tmp_path):
    images = load_detection_dataset(write_coco(tmp_path / "set")).images
    report = evaluate_detections(images, imperfect_detections(images), model="toy@1", score_threshold=0.01)
    report.save(tmp_path / "report.json")
    assert DetectionReport.load(tmp_path / "report.json") == report
    assert len(KNOWN_IMAGES) == report.images

"""``imgrec import darknet`` and ``imgrec evaluate`` for detectors: a tiny imported detector end to end, the shipped
Darknet files, clear errors, and the reference mAP of both shipped detectors on the Cartucho indoor photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgrec.cli import main
from imgrec.core.settings import get_settings
from imgrec.registry import catalog
from imgrec.tasks.detection_metrics import DETECTION_REPORT, DetectionReport
from tests.helpers.cli import run_cli
from tests.helpers.darknet import TINY_DETECTOR_WEIGHTS, write_tiny_detector
from tests.helpers.detection_data import write_voc, write_yolo
from tests.helpers.settings import make_settings, settings_env

CARTUCHO = "datasets/cartucho-indoor/coco15.json"
# PROVENANCE of the Cartucho set: pycocotools, score threshold 0.01, one class per box, per-class NMS at 0.45.
REFERENCE = {"coco-yolo-fastest-xl": (0.287, 0.139), "coco-yolo-fastest": (0.194, 0.080)}


@pytest.fixture
def in_process_cli(settings, monkeypatch):
    """``main.main`` reading these settings from the environment, as a real run would."""
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield lambda *args: main.main([str(arg) for arg in args])
    get_settings.cache_clear()


def test_an_imported_tiny_detector_is_registered_and_evaluated_beside_itself(tmp_path):
    settings = make_settings(tmp_path)
    cfg, weights, names = write_tiny_detector(tmp_path / "darknet")
    done = run_cli(["import", "darknet", cfg, weights, "--names", names, "--name", "tiny-yolo"], settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"Registered tiny-yolo@1: 3 classes, 32×32 input, 1 heads, "
                                   f"{TINY_DETECTOR_WEIGHTS} weights read.")
    card = catalog.load_card("tiny-yolo", "1", settings)
    assert card.task == "detection" and card.class_names == ("person", "dog", "tv")
    assert "tiny-yolo.weights (sha256 " in card.source

    dataset = write_yolo(tmp_path / "yolo")
    done = run_cli(["evaluate", "tiny-yolo", "--dataset", dataset, "--score-threshold", "0.05"], settings)
    assert done.returncode == 0, done.stderr
    report = DetectionReport.load(catalog.model_dir("tiny-yolo", "1", settings) / DETECTION_REPORT)
    assert report.model == "tiny-yolo@1" and report.images == 3 and report.score_threshold == 0.05
    assert [(row.label, row.ground_truth) for row in report.per_class] == [("dog", 3), ("person", 3), ("tv", 1)]
    assert sum(row.detections for row in report.per_class) > 0  # a random detector still boxes something
    headline = done.stdout.splitlines()[0]
    assert f"mAP@[.5:.95] {report.map_50_95:.3f}, mAP@0.5 {report.map_50:.3f}" in headline
    assert "Traceback" not in done.stderr

    # The same boxes in the VOC layout, the report to a file of one's choosing, as JSON.
    output = tmp_path / "voc-report.json"
    done = run_cli(["evaluate", "tiny-yolo@1", "--dataset", write_voc(tmp_path / "voc"), "--format", "voc",
                    "--score-threshold", "0.05", "--output", output, "--json"], settings)
    assert done.returncode == 0, done.stderr
    printed = DetectionReport.from_dict(json.loads(done.stdout))
    assert printed == DetectionReport.load(output)
    assert printed.map_50_95 == pytest.approx(report.map_50_95) and printed.map_50 == pytest.approx(report.map_50)


def test_mistakes_are_one_error_line_naming_what_was_expected(tmp_path, in_process_cli, settings, capsys):
    cfg, weights, names = write_tiny_detector(tmp_path / "darknet", names=("person", "dog"))
    assert in_process_cli("import", "darknet", cfg, weights, "--names", names) == 2
    assert capsys.readouterr().err == ("error: tiny.names names 2 classes but tiny-yolo.cfg has 3. "
                                       "Expected one name per class.\n")
    assert in_process_cli("import", "darknet", cfg, tmp_path / "none.weights", "--names", names) == 2
    assert "none.weights is not a file. Expected a Darknet .cfg and its .weights." in capsys.readouterr().err
    weights.write_bytes(weights.read_bytes()[:-8])
    assert in_process_cli("import", "darknet", cfg, weights, "--names", names) == 2
    assert "tiny-yolo.weights ends too early" in capsys.readouterr().err
    assert not catalog.model_names(settings)  # nothing half-registered

    with pytest.raises(SystemExit) as usage:
        in_process_cli("evaluate", "coco-yolo-fastest", "--dataset", tmp_path, "--score-threshold", "0")
    assert usage.value.code == 2
    assert "0 is out of range. Expected a score in (0, 1]." in capsys.readouterr().err


def test_evaluating_on_a_missing_dataset_is_a_clear_error(tmp_path, in_process_cli, capsys):
    cfg, weights, names = write_tiny_detector(tmp_path / "darknet")
    assert in_process_cli("import", "darknet", cfg, weights, "--names", names, "--name", "tiny-yolo") == 0
    assert in_process_cli("evaluate", "tiny-yolo", "--dataset", tmp_path / "nowhere") == 2
    assert capsys.readouterr().err.endswith("nowhere does not exist. Expected a COCO JSON file or a VOC/YOLO "
                                            "dataset folder.\n")


@pytest.mark.slow
def test_importing_the_shipped_darknet_files_serves_what_the_shipped_keras_model_serves(in_process_cli, settings,
                                                                                     photos_dir, capsys):
    from imgrec.core.images import decode_image
    from imgrec.inference.predictor import Predictor
    from imgrec.modeling.darknet import DarknetError, shipped_detector_files

    try:
        cfg, weights, names = shipped_detector_files("yolo-fastest-1.1", settings)
    except DarknetError:
        pytest.skip("the shipped detectors are not in ../shared/detection")
    assert in_process_cli("import", "darknet", cfg, weights, "--names", names, "--name", "imported-fastest") == 0
    imported = Predictor.load("imported-fastest", None, settings)
    stock = Predictor.load("coco-yolo-fastest", None, settings)  # from the shipped .keras, on first use
    assert imported.card.class_names == stock.card.class_names and imported.card.decoding == stock.card.decoding
    photos = [decode_image(photos_dir / name) for name in ("pets.jpg", "grace_hopper.jpg")]
    np.testing.assert_allclose(imported.predict_outputs(photos), stock.predict_outputs(photos), atol=1e-4)
    pets, grace = imported.predict(photos)
    assert [d.label for d in pets.detections].count("dog") >= 1 and "person" in [d.label for d in grace.detections]


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(REFERENCE))
def test_both_shipped_detectors_reproduce_the_reference_map_on_the_cartucho_photos(model, in_process_cli, settings,
                                                                                   capsys):
    dataset = settings.shared_data_dir.parent / CARTUCHO
    if not dataset.is_file():
        pytest.skip("the Cartucho indoor set is not in ../shared/datasets")
    assert in_process_cli("evaluate", model, "--dataset", dataset, "--best-class-only", "--json") == 0
    report = DetectionReport.from_dict(json.loads(capsys.readouterr().out))
    map_50, map_50_95 = REFERENCE[model]
    assert report.images == 85 and len(report.per_class) == 15 and report.best_class_only
    assert report.map_50 == pytest.approx(map_50, abs=0.01)
    assert report.map_50_95 == pytest.approx(map_50_95, abs=0.01)

    # As the Predictor serves them (every class over the threshold per box), recall and AP can only grow.
    assert in_process_cli("evaluate", model, "--dataset", dataset, "--json") == 0
    served = DetectionReport.from_dict(json.loads(capsys.readouterr().out))
    assert served.map_50 > report.map_50


def test_evaluate_still_scores_a_classifier_on_a_dataset_split(settings, in_process_cli, tmp_path, capsys):
    from tests.helpers.datasets import make_image_folder
    from tests.helpers.models import TINY_CLASSES, build_tiny_model, tiny_card

    classes = tuple(sorted(TINY_CLASSES))  # a folder dataset's classes come in name order
    catalog.save_model(build_tiny_model(), tiny_card().with_updates(class_names=classes), settings)
    folder = make_image_folder(tmp_path / "folder", per_class=6, classes=classes)
    assert in_process_cli("evaluate", "tiny-cnn@1", "--dataset", folder, "--split", "test") == 0
    printed = capsys.readouterr().out
    assert printed.startswith("tiny-cnn@1 on ") and "accuracy" in printed and "macro F1" in printed

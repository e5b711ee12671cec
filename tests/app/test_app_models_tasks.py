"""The Models page for detectors and multi-label models under AppTest: a detector's report made by a real
`imgrec evaluate`, evaluating from the page, the leaderboard's mAP, a detector export's box parity, and a tiny
multi-label model's report with per-class thresholds and PR curves."""

from __future__ import annotations

import json
import shutil

import pytest

from imgrec.cli import main
from imgrec.core.settings import get_settings
from imgrec.datasets import multilabel
from imgrec.registry import catalog, exports
from imgrec.tasks.detection import DetectionTask
from imgrec.tasks.detection_metrics import DETECTION_REPORT, DetectionReport
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.darknet import write_tiny_detector
from tests.helpers.detection_data import COCO_LABELS, write_voc, write_yolo
from tests.helpers.export import requires_export_runtimes
from tests.helpers.multilabel_data import COLOURS, train_tiny_multilabel, write_colour_cifar
from tests.helpers.settings import make_settings, settings_env

PAGE = "pages/models.py"
DETECTOR = "tiny-yolo@1"


def _cli(settings, *args) -> int:
    """``imgrec`` in this process, reading ``settings`` from the environment as a real run would."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings_env(settings).items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        try:
            return main.main([str(arg) for arg in args])
        finally:
            get_settings.cache_clear()


@pytest.fixture(scope="module")
def detector_template(tmp_path_factory):
    """A tiny imported detector with the report `imgrec evaluate` wrote on a tiny YOLO dataset; a VOC copy too."""
    root = tmp_path_factory.mktemp("models-detector")
    settings = make_settings(root)
    cfg, weights, names = write_tiny_detector(root / "darknet")
    assert _cli(settings, "import", "darknet", cfg, weights, "--names", names, "--name", "tiny-yolo") == 0
    assert _cli(settings, "evaluate", DETECTOR, "--dataset", write_yolo(root / "yolo"),
                "--score-threshold", "0.05") == 0
    write_voc(root / "voc")
    return settings, root


@pytest.fixture
def detector(detector_template, tmp_path):
    template, root = detector_template
    settings = make_settings(tmp_path)
    shutil.copytree(template.models_dir, settings.models_dir)
    return settings, root / "voc"


def _report(settings) -> DetectionReport:
    return DetectionReport.load(catalog.model_dir("tiny-yolo", "1", settings) / DETECTION_REPORT)


def _leaderboard(at):
    return next(d.value for d in at.dataframe if "Backbone" in d.value.columns)


def test_the_task_reads_back_the_saved_detection_report(detector):
    settings, _ = detector
    path = catalog.model_dir("tiny-yolo", "1", settings) / DETECTION_REPORT
    assert DetectionTask().report_from_dict(json.loads(path.read_text())) == DetectionReport.load(path)


def test_a_detector_shows_its_report_and_the_leaderboard_its_map(monkeypatch, detector):
    settings, _ = detector
    report = _report(settings)
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        board = _leaderboard(at)
        assert list(board["Metric"]) == ["mAP@[.5:.95]"]
        assert list(board["Score"]) == [pytest.approx(report.map_50_95)]
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["mAP@[.5:.95]"] == f"{report.map_50_95:.3f}" and metrics["mAP@0.5"] == f"{report.map_50:.3f}"
        per_class = next(d.value for d in at.dataframe if "AP50" in d.value.columns)
        assert list(per_class["class"]) == list(COCO_LABELS) and list(per_class["boxes"]) == [3, 3, 1]
        assert any("Detection evaluation on" in shown(m.value) and "yolo" in shown(m.value) for m in at.markdown)
        assert len(elements(at, "vega_lite_chart")) >= 1  # the PR curves at IoU 0.5
        assert at.button(key="FormSubmitter:models.detection_eval-Run the evaluation")


def test_evaluating_a_detector_from_the_page_replaces_its_report(monkeypatch, detector):
    settings, voc = detector
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        at.text_input(key="models.detection_eval.path").input(str(voc))
        at.selectbox(key="models.detection_eval.format").set_value("voc")
        at.number_input(key="models.detection_eval.threshold").set_value(0.05)
        at.button(key="FormSubmitter:models.detection_eval-Run the evaluation").click().run()
        assert not at.exception, at.exception
        report = _report(settings)
        assert report.dataset == str(voc) and report.images == 3 and report.score_threshold == 0.05
        assert any(f"mAP@[.5:.95] {report.map_50_95:.3f}" in shown(s.value) for s in at.success)
        assert any(str(voc.name) in shown(m.value) for m in at.markdown if "Detection evaluation on" in m.value)


def test_a_wrong_dataset_path_is_a_message_and_the_report_stays(monkeypatch, detector, tmp_path):
    settings, _ = detector
    before = _report(settings)
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        at.text_input(key="models.detection_eval.path").input(str(tmp_path / "nowhere"))
        at.button(key="FormSubmitter:models.detection_eval-Run the evaluation").click().run()
        assert not at.exception, at.exception
        errors = [shown(e.value) for e in at.error]
        assert any("nowhere does not exist. Expected a COCO JSON file or a VOC/YOLO dataset folder" in e
                   for e in errors), errors
    assert _report(settings) == before


@requires_export_runtimes
def test_a_detector_export_shows_its_box_parity(monkeypatch, detector):
    settings, _ = detector
    with app_with_settings(monkeypatch, settings, page=PAGE, timeout=300) as at:
        at.run()
        at.multiselect(key="models.formats").set_value(["onnx"])
        at.button(key="FormSubmitter:models.export_form-Run exports").click().run()
        assert not at.exception, at.exception
        parity = next(d.value for d in at.dataframe if "Format" in d.value.columns)
        assert "Boxes matched (IoU ≥ 0.5)" in parity.columns and "Top-1 agreement" not in parity.columns
        onnx = parity[parity["Format"] == exports.FORMAT_INFO["onnx"][0]].iloc[0]
        entry = exports.read_parity("tiny-yolo", "1", settings)["exports"]["onnx"]
        assert onnx["Boxes matched (IoU ≥ 0.5)"] == f"{entry['figures']['matched_share']:.1%}"


@pytest.fixture(scope="module")
def multilabel_settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("models-multilabel")
    settings = make_settings(root, shared_data_dir=write_colour_cifar(root / "shared"))
    run = train_tiny_multilabel(settings, multilabel.MOSAIC, limit_per_class=10)
    assert run.status()["state"] == "completed", run.log_tail()
    return settings


def test_a_multilabel_model_shows_thresholds_pr_curves_and_its_map(monkeypatch, multilabel_settings):
    card = catalog.load_card("tiny-multilabel", "1", multilabel_settings)
    with app_with_settings(monkeypatch, multilabel_settings, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        board = _leaderboard(at)
        assert list(board["Metric"]) == ["mAP"] and list(board["Score"]) == [pytest.approx(card.metrics["mAP"])]
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["mAP"] == f"{card.metrics['mAP']:.3f}" and "Hamming loss" in metrics
        per_class = next(d.value for d in at.dataframe if "threshold" in d.value.columns)
        assert list(per_class["class"]) == sorted(COLOURS)
        assert list(per_class["threshold"]) == pytest.approx(card.decoding["thresholds"])
        assert at.multiselect(key="models.multilabel.tiny-multilabel@1.pr").value == sorted(COLOURS)[:5]
        assert len(elements(at, "vega_lite_chart")) >= 2  # PR curves and label co-occurrence


def test_a_detector_without_a_report_says_how_to_make_one_and_has_no_score(monkeypatch, detector):
    settings, _ = detector
    (catalog.model_dir("tiny-yolo", "1", settings) / DETECTION_REPORT).unlink()
    with app_with_settings(monkeypatch, settings, page=PAGE) as at:
        at.run()
        assert not at.exception, at.exception
        board = _leaderboard(at)
        assert list(board["Metric"]) == ["—"] and board["Score"].isna().all()
        assert any("has no detection report yet. Make one below" in shown(i.value) for i in at.info)
        assert at.text_input(key="models.detection_eval.path").value == ""

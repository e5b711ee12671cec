"""A person's flow on the Models page in Chromium: a detector's report made by `imgrec evaluate`, then a new
evaluation run from the page on a Pascal VOC folder."""

from __future__ import annotations

import pytest

from imgrec.registry import catalog
from imgrec.tasks.detection_metrics import DETECTION_REPORT, DetectionReport
from tests.helpers.browser import browser_page, screenshot, streamlit_server
from tests.helpers.cli import run_cli
from tests.helpers.darknet import write_tiny_detector
from tests.helpers.detection_data import write_voc, write_yolo
from tests.helpers.settings import make_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_detectors_report_and_an_evaluation_from_the_page(tmp_path):
    settings = make_settings(tmp_path)
    cfg, weights, names = write_tiny_detector(tmp_path / "darknet")
    done = run_cli(["import", "darknet", cfg, weights, "--names", names, "--name", "tiny-yolo"], settings)
    assert done.returncode == 0, done.stderr
    done = run_cli(["evaluate", "tiny-yolo", "--dataset", write_yolo(tmp_path / "yolo"), "--score-threshold", "0.05"],
                   settings)
    assert done.returncode == 0, done.stderr
    voc = write_voc(tmp_path / "voc")
    report_file = catalog.model_dir("tiny-yolo", "1", settings) / DETECTION_REPORT
    with streamlit_server(settings) as url, browser_page() as page:
        page.goto(f"{url}/models")
        page.get_by_role("heading", name="Models").wait_for()
        page.get_by_text("Active model:").wait_for()  # the app registers the stock ImageNet model as active
        page.get_by_label("Model version").first.click()
        page.get_by_role("option", name="tiny-yolo@1").click()
        page.get_by_role("heading", name="tiny-yolo@1").wait_for()  # the Card tab's title
        page.get_by_role("tab", name="Evaluation").click()
        page.get_by_text("Detection evaluation on").wait_for()
        report = DetectionReport.load(report_file)
        page.get_by_test_id("stMetric").filter(has_text="mAP@[.5:.95]").filter(
            has_text=f"{report.map_50_95:.3f}").wait_for()
        page.locator("[data-testid='stDataFrame']").filter(has_text="AP50").wait_for()
        page.locator("[data-testid='stVegaLiteChart']").first.wait_for()  # the PR curves
        page.wait_for_timeout(1000)
        screenshot(page, "models-detection-report")

        page.get_by_label("Dataset path").fill(str(voc))
        page.get_by_role("button", name="Run the evaluation").click()
        page.get_by_text("Evaluated tiny-yolo@1 on 3 images").wait_for(timeout=120_000)
        assert DetectionReport.load(report_file).dataset == str(voc)
        page.get_by_role("tab", name="Evaluation").click()
        page.get_by_text("Detection evaluation on").wait_for()
        page.get_by_text("voc").first.wait_for()
        screenshot(page, "models-detection-evaluated")

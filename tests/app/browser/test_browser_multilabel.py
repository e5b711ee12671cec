"""A person's flow with a multi-label model on the Predict page, in Debian's Chromium: upload a photo, see the
label set found and the Grad-CAM of its best label."""

from __future__ import annotations

import pytest

from imgrec.registry import catalog
from tests.app.test_app_predict import without_stock_detectors
from tests.app.test_app_predict_multilabel import MODEL, multilabel_models_dir  # noqa: F401 - a fixture
from tests.helpers.browser import browser_page, screenshot, streamlit_server
from tests.helpers.settings import make_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_upload_a_photo_to_a_multi_label_model_and_see_its_label_set(
    monkeypatch, multilabel_models_dir, photos_dir, tmp_path  # noqa: F811 - the fixture imported above
):
    without_stock_detectors(monkeypatch, tmp_path)
    settings = make_settings(tmp_path, models_dir=multilabel_models_dir)
    catalog.set_active_model(MODEL, "1", settings)
    with streamlit_server(settings) as url, browser_page() as page:
        page.goto(url)
        page.get_by_text("Add an image to see what the model makes of it").wait_for()
        page.locator("input[type=file]").first.set_input_files([str(photos_dir / "cat.jpg")])
        found = page.get_by_test_id("stAlertContentSuccess").get_by_text("Labels found:")
        found.wait_for(timeout=120_000)
        assert {part.split()[0] for part in found.inner_text().removeprefix("Labels found: ").split(", ")} == {
            "red", "green"}
        page.get_by_text("Grad-CAM for “").first.wait_for()
        page.locator("[data-testid='stVegaLiteChart']").first.wait_for()  # every label against its threshold
        page.wait_for_timeout(1500)  # let the chart finish drawing for the screenshot
        assert screenshot(page, "predict-multilabel").stat().st_size > 20_000
        assert page.get_by_text("Traceback").count() == 0
        assert page.get_by_text("Uncertain", exact=True).count() == 0  # no such verdict: "no label found" instead

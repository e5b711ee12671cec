"""A person's flow on the Predict page, in Debian's Chromium driven by Playwright."""

from __future__ import annotations

import pytest

from tests.app.test_app_predict import without_stock_detectors
from tests.helpers.browser import browser_page, screenshot, streamlit_server
from tests.helpers.settings import make_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_upload_a_photo_and_see_chart_and_overlay(monkeypatch, imagenet_settings, photos_dir, tmp_path):
    without_stock_detectors(monkeypatch, tmp_path)
    settings = make_settings(tmp_path, models_dir=imagenet_settings.models_dir, samples_dir=photos_dir)
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a picture")
    with streamlit_server(settings) as url, browser_page() as page:
        page.goto(url)
        page.get_by_text("Add an image to see what the model makes of it").wait_for()
        page.locator("input[type=file]").first.set_input_files([str(photos_dir / "cat.jpg"), str(bad)])
        # What a person sees: the verdict, the chart, the overlay and the bad file's message.
        page.get_by_text("Egyptian cat").first.wait_for(timeout=120_000)
        page.locator("[data-testid='stVegaLiteChart']").first.wait_for()
        page.get_by_text("Grad-CAM for “Egyptian cat”").wait_for()
        page.get_by_text("Heatmap alone").wait_for()  # beside the overlay, not in a collapsed expander
        page.get_by_test_id("stAlertContentError").get_by_text("Unsupported image format 'text'").wait_for()
        page.get_by_text("All 2 images").wait_for()  # the results table of several uploads
        page.wait_for_timeout(1500)  # let the chart finish drawing for the screenshot
        shot = screenshot(page, "predict-page")
        assert shot.stat().st_size > 20_000
        assert page.locator("[data-testid='stImage'] img").count() == 3  # preview, overlay, heatmap
        assert page.get_by_text("Traceback").count() == 0

"""Chromium on the Analytics page of a log with detections: the detection charts draw, and the detected-class
filter narrows every number."""

from __future__ import annotations

import pytest

from tests.helpers.app_seeds import seed_task_analytics_log
from tests.helpers.browser import browser_page, screenshot, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_detection_charts_and_the_detected_class_filter(settings):
    seed_task_analytics_log(settings)
    with streamlit_server(settings) as url, browser_page() as page:
        page.goto(url)
        page.get_by_role("link", name="Analytics").click()
        page.get_by_role("heading", name="Detections").wait_for()
        for title in ("Detected objects per hour (UTC), by class", "Objects per image", "Detection scores (every box)"):
            # Vega draws each chart's title into its SVG: the chart is on screen, not just in the page's data.
            page.locator("[data-testid='stVegaLiteChart'] svg").filter(has_text=title).first.wait_for()
        page.get_by_role("heading", name="Detections").scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        screenshot(page, "analytics-detections")
        page.locator("[data-testid='stVegaLiteChart'] svg").filter(has_text="Labels found together").first.wait_for()
        page.get_by_role("heading", name="Videos").scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        screenshot(page, "analytics-label-sets-and-videos")
        predictions = page.locator("[data-testid='stMetric']").filter(has_text="Predictions").first
        assert predictions.inner_text().splitlines()[-1] == "6"
        page.locator("[data-testid='stMultiSelect']").filter(has_text="Detected classes").click()
        page.get_by_role("option", name="dog").click()
        page.keyboard.press("Escape")
        predictions.filter(has_text="1").wait_for()
        assert predictions.inner_text().splitlines()[-1] == "1"
        assert page.get_by_text("Traceback").count() == 0

"""A person's flow on the Analytics page in Chromium: seeded log, KPIs, a filter, a CSV download, a review."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.helpers.app_seeds import seed_analytics_log
from tests.helpers.browser import browser_page, screenshot, streamlit_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_filter_and_export(settings, tmp_path):
    seed_analytics_log(settings)
    with streamlit_server(settings) as url, browser_page() as page:
        page.goto(url)
        page.get_by_role("link", name="Analytics").click()
        kpi = page.locator("[data-testid='stMetric']").filter(has_text="Predictions").first
        kpi.wait_for()
        assert "40" in kpi.inner_text()
        page.locator("[data-testid='stVegaLiteChart']").nth(3).wait_for()
        page.wait_for_timeout(1000)
        screenshot(page, "analytics-page")
        # Filter to the API's predictions through the sidebar multiselect.
        page.get_by_label("Sources").first.click()
        page.get_by_role("option", name="api").click()
        page.keyboard.press("Escape")
        page.locator("[data-testid='stMetric']").filter(has_text="Predictions").first.filter(has_text="20").wait_for()
        page.get_by_role("tab", name="Export").click()
        page.get_by_role("button", name="Prepare CSV").click()
        with page.expect_download() as download:
            page.get_by_role("button", name="Download CSV").click()
        path = tmp_path / "export.csv"
        download.value.save_as(path)
        frame = pd.read_csv(path)
        assert len(frame) == 20 and set(frame["source"]) == {"api"}
        screenshot(page, "analytics-export")


def test_mark_a_queued_prediction_right(settings):
    seed_analytics_log(settings)
    with streamlit_server(settings) as url, browser_page() as page:
        page.goto(url)
        page.get_by_role("link", name="Analytics").click()
        corrections = page.locator("[data-testid='stMetric']").filter(has_text="Corrections").first
        corrections.wait_for()
        assert corrections.inner_text().splitlines()[-1] == "3"  # the seed's three relabelled cats
        page.get_by_role("tab", name="Review queue").click()
        page.get_by_role("button", name="This is right").first.click()
        page.get_by_text("marked right").wait_for()
        corrections.filter(has_text="4").wait_for()
        screenshot(page, "analytics-review")
        assert page.get_by_text("Traceback").count() == 0

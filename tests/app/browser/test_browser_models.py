"""A person's flow on the Models page in Chromium: a deep link, the parity table, then make another version active."""

from __future__ import annotations

import pytest

from imgrec.registry import catalog
from tests.helpers.app_seeds import seed_models
from tests.helpers.browser import browser_page, screenshot, streamlit_server
from tests.helpers.export import requires_export_runtimes

pytestmark = [pytest.mark.browser, pytest.mark.slow, requires_export_runtimes]


def test_parity_table_and_set_active(tmp_path):
    settings = seed_models(tmp_path)
    with streamlit_server(settings) as url, browser_page() as page:
        # A bookmark as the fresh server's very first request: the app's own navigation, not file names.
        page.goto(f"{url}/models")
        page.get_by_role("heading", name="Models").wait_for()
        page.get_by_role("link", name="Predict").wait_for()
        assert page.get_by_role("link", name="streamlit app").count() == 0
        page.get_by_text("Active model: tiny-cnn@1").wait_for()
        page.get_by_role("tab", name="Exports & parity").click()
        page.get_by_text("Held-out set:").wait_for()
        table = page.locator("[data-testid='stDataFrame']").filter(has_text="Top-1 agreement")
        table.wait_for()
        page.wait_for_timeout(1000)
        screenshot(page, "models-page")
        # Make version 2 active.
        page.get_by_label("Model version").first.click()
        page.get_by_role("option", name="tiny-cnn@2").click()
        page.get_by_role("tab", name="Card").click()
        page.get_by_role("button", name="Make this the active model").click()
        page.get_by_text("tiny-cnn@2 is now the active model").wait_for()
        assert catalog.active_model(settings) == ("tiny-cnn", "2")
        page.get_by_text("Active model: tiny-cnn@2").wait_for()
        screenshot(page, "models-page-activated")


def test_leaderboard_row_opens_its_version_and_an_export_stays_on_its_tab(tmp_path):
    settings = seed_models(tmp_path)
    with streamlit_server(settings) as url, browser_page() as page:
        page.goto(f"{url}/models")
        board = page.locator("[data-testid='stDataFrame']").filter(has_text="Backbone").first
        board.wait_for()
        page.wait_for_timeout(1000)  # the grid draws on a canvas: let it finish
        # The leaderboard puts tiny-cnn@2 (83 %) first; the page opened on the active tiny-cnn@1.
        page.get_by_role("heading", name="tiny-cnn@1").wait_for()  # the Card tab's title
        box = board.bounding_box()
        page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)  # the first row's selection cell
        page.get_by_role("heading", name="tiny-cnn@2").wait_for()
        # Export the pre-selected fast format: the page comes back on the Exports tab.
        page.get_by_role("tab", name="Exports & parity").click()
        page.get_by_role("button", name="Run exports").click()
        page.get_by_text("Exports of tiny-cnn@2 finished").wait_for(timeout=180_000)
        tab = page.get_by_role("tab", name="Exports & parity")
        assert tab.get_attribute("aria-selected") == "true"
        # The page reruns after the message: the tab's button is back once that rerun has drawn it.
        page.get_by_role("button", name="Run exports").wait_for(timeout=30_000)
        assert tab.get_attribute("aria-selected") == "true"
        screenshot(page, "models-after-export")

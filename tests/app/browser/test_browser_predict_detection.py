"""A person's flows on the Predict page in Debian's Chromium: a detector's boxes and count table on
``pets.jpg``, and an upload that is still there after a visit to another page."""

from __future__ import annotations

import pytest

from imgrec.registry import catalog
from imgrec.registry.detector_cards import DEFAULT_DETECTOR
from tests.helpers.browser import browser_page, screenshot, streamlit_server
from tests.helpers.settings import make_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def detector_server(detector_settings, photos_dir, tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("browser-detect"), models_dir=detector_settings.models_dir,
                             samples_dir=photos_dir)
    catalog.set_active_model(DEFAULT_DETECTOR, None, settings)
    with streamlit_server(settings) as url:
        yield url


def upload(page, path) -> None:
    page.get_by_text("Add an image to see what the model makes of it").wait_for()
    page.locator("input[type=file]").first.set_input_files([str(path)])


def test_upload_pets_to_the_detector_and_see_boxes_and_counts(detector_server, photos_dir):
    with browser_page() as page:
        page.goto(detector_server)
        upload(page, photos_dir / "pets.jpg")
        page.get_by_text("2 object(s) · 512×430 JPEG").wait_for(timeout=180_000)
        page.get_by_text("Grad-CAM for box #1 dog").wait_for(timeout=180_000)
        counts = page.locator("[data-testid='stDataFrame']").first
        counts.wait_for()
        page.wait_for_timeout(1500)  # let the tables and images finish drawing for the screenshot
        shot = screenshot(page, "predict-detector-pets")
        assert shot.stat().st_size > 50_000
        assert page.get_by_text("2 objects (2 dog)").count() >= 1  # the verdict's words
        assert page.get_by_text("Traceback").count() == 0


def test_an_upload_is_kept_across_a_page_switch(detector_server, photos_dir):
    with browser_page() as page:
        page.goto(detector_server)
        upload(page, photos_dir / "parrot.jpg")
        page.get_by_text("Grad-CAM for box #1 bird").wait_for(timeout=180_000)
        page.get_by_role("link", name="Analytics").click()
        page.get_by_role("heading", name="Analytics").wait_for()
        page.get_by_role("link", name="Predict").click()
        page.get_by_text("1 uploaded image(s) kept: parrot.jpg").wait_for()
        page.get_by_text("Grad-CAM for box #1 bird").wait_for(timeout=120_000)
        page.wait_for_timeout(1000)
        screenshot(page, "predict-kept-after-page-switch")
        assert page.get_by_text("Add an image to see what the model makes of it").count() == 0
        assert page.get_by_text("Traceback").count() == 0

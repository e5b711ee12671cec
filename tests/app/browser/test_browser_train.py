"""A person's flow on the Train page in Debian's Chromium: configure a tiny run, launch it, watch the curve grow."""

from __future__ import annotations

import re

import pytest

from imgrec.training import runs
from tests.helpers.browser import browser_page, screenshot, streamlit_server
from tests.helpers.datasets import make_image_folder
from tests.helpers.settings import make_settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EPOCHS = 6


def _epoch_shown(page) -> int:
    text = page.get_by_test_id("stProgress").first.inner_text()
    found = re.search(r"epoch (\d+)/", text)
    return int(found.group(1)) if found else 0


def _pick(page, label: str, option: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text=label).first.click()
    page.get_by_role("option", name=option).first.click()


def test_launch_a_tiny_run_and_watch_the_curve_grow(tmp_path):
    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=80, size=64)
    with streamlit_server(settings) as url, browser_page() as page:
        page.goto(url)
        page.get_by_role("link", name=re.compile("^train$", re.I)).first.click()
        page.get_by_role("button", name="Launch run").wait_for(timeout=120_000)
        _pick(page, "Dataset", "A folder path…")
        page.get_by_role("textbox", name="Folder of class folders").fill(str(folder))
        page.get_by_role("textbox", name="Folder of class folders").press("Enter")
        page.get_by_text("Dataset check: ready").wait_for()
        _pick(page, "Backbone", "small_cnn")
        page.get_by_role("spinbutton", name="Head epochs").fill(str(EPOCHS))
        page.get_by_role("spinbutton", name="Head epochs").press("Enter")
        page.get_by_role("textbox", name="Model name").fill("browser-cnn")
        page.get_by_role("textbox", name="Model name").press("Enter")
        page.wait_for_timeout(500)
        page.get_by_role("button", name="Launch run").click()

        # The run panel refreshes itself: the first curve point, then more, without any click.
        page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=120_000)
        first = _epoch_shown(page)
        page.wait_for_function(
            f"""() => {{
                const bar = document.querySelector("[data-testid='stProgress']");
                const m = bar && bar.innerText.match(/epoch (\\d+)\\//);
                return m && Number(m[1]) > {first};
            }}""",
            timeout=120_000,
        )
        assert _epoch_shown(page) > first >= 1
        page.wait_for_timeout(800)
        screenshot(page, "train-page")
        page.get_by_text("Evaluation of `browser-cnn@1`".replace("`", "")).first.wait_for(timeout=180_000)
        page.get_by_text("Make this the active model").wait_for()
        # Choosing a confusion-matrix cell (top left: true blue, predicted blue) reports that cell.
        heatmap = page.locator("[data-testid='stVegaLiteChart']").nth(1)
        heatmap.locator("canvas, svg").first.wait_for()
        page.wait_for_timeout(1000)
        heatmap.click(position={"x": 127, "y": 64})
        try:
            page.get_by_text("Selected cell: true blue, predicted blue").wait_for(timeout=30_000)
        except Exception:
            screenshot(page, "train-page-failed")
            raise
        page.get_by_text("Evaluation of").first.scroll_into_view_if_needed()
        page.wait_for_timeout(1500)
        shot = screenshot(page, "train-page-done")
        assert shot.stat().st_size > 20_000
        assert page.get_by_text("Traceback").count() == 0
    [run] = runs.list_runs(settings)
    assert run.state == runs.COMPLETED and len(run.metrics()) >= 2


def test_the_name_follows_the_dataset_and_a_preset_fills_the_form(tmp_path):
    from imgrec.datasets.loading import datasets_dir

    settings = make_settings(tmp_path)
    for name in ("flowers", "birds"):
        make_image_folder(datasets_dir(settings) / "folders" / name, per_class=4)
    with streamlit_server(settings) as url, browser_page() as page:
        page.goto(f"{url}/train")
        page.get_by_role("button", name="Launch run").wait_for(timeout=120_000)
        name = page.get_by_role("textbox", name="Model name")
        _pick(page, "Dataset", str(datasets_dir(settings) / "folders" / "flowers"))
        page.wait_for_function("() => [...document.querySelectorAll('input')].some(i => i.value === 'flowers')")
        _pick(page, "Dataset", str(datasets_dir(settings) / "folders" / "birds"))
        page.wait_for_function("() => [...document.querySelectorAll('input')].some(i => i.value === 'birds')")
        assert name.input_value() == "birds"
        page.get_by_role("button", name="Quick demo").click()
        page.get_by_text("No time estimate yet").wait_for()
        page.wait_for_function("() => [...document.querySelectorAll('input')].some("
                               "i => i.getAttribute('aria-label') === 'Head epochs' && i.value === '3')")
        screenshot(page, "train-presets")
        assert page.get_by_text("Traceback").count() == 0

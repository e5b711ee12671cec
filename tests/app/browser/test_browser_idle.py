"""The app as ``make run`` serves it (``.streamlit/config.toml``, no AppTest): an idle server stays idle."""

from __future__ import annotations

import time
import tomllib

import psutil
import pytest

from imgrec.core.settings import PROJECT_ROOT
from tests.helpers.browser import browser_page, streamlit_server
from tests.helpers.settings import make_settings, own_models_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]

IDLE_SECONDS = 15
MAX_IDLE_CPU_PERCENT = 5.0  # of one core; the file watcher's overflow loop held ~100 %


def server_cpu_percent(process: psutil.Process, seconds: float) -> float:
    """CPU of the server and its children over ``seconds``, in percent of one core."""
    everyone = [process, *process.children(recursive=True)]
    before = sum(sum(p.cpu_times()[:2]) for p in everyone)
    time.sleep(seconds)
    after = sum(sum(p.cpu_times()[:2]) for p in everyone if p.is_running())
    return (after - before) / seconds * 100


def test_the_run_configuration_turns_the_file_watcher_off():
    server = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())["server"]
    assert (server["fileWatcherType"], server["runOnSave"]) == ("none", False)


def test_idle_server_after_a_prediction_uses_little_cpu(tiny_settings, photos_dir, tmp_path):
    settings = make_settings(tmp_path, models_dir=own_models_dir(tiny_settings, tmp_path), samples_dir=photos_dir)
    # address=None: the address, like every other server option, comes from .streamlit/config.toml as in `make run`.
    with streamlit_server(settings, address=None, with_process=True) as (url, process), browser_page() as page:
        page.goto(url)
        page.get_by_text("Add an image to see what the model makes of it").wait_for()
        page.locator("input[type=file]").first.set_input_files([str(photos_dir / "cat.jpg")])
        page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=120_000)  # the scores chart
        page.wait_for_timeout(3000)  # let the last rerun and chart drawing finish
        cpu = server_cpu_percent(psutil.Process(process.pid), IDLE_SECONDS)
        assert cpu < MAX_IDLE_CPU_PERCENT, f"idle server used {cpu:.1f} % of a core over {IDLE_SECONDS} s"

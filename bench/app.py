"""The app as a person uses it: Chromium against a `make run`-configured Streamlit server, step by step.

Starts ``streamlit run streamlit_app.py`` the way ``make run`` does (``.streamlit/config.toml``: no
file watcher) and, for the side-by-side column, the previous configuration (Streamlit's default file
watcher), one after the other with the same default model and photos. For each it times, in a real
Chromium: the cold Predict page ready, the first prediction, one more photo, Grad-CAM++ on 4 photos,
faithfulness of one map, a warm page reload, and the server's idle CPU afterwards.

    python bench/app.py                 # both configurations
    python bench/app.py --only run      # just `make run`'s
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import default_model_settings, machine, sample_photo

from imgrec.core.settings import PROJECT_ROOT
from tests.helpers.browser import CHROMIUM_ARGS, chromium_path
from tests.helpers.servers import free_port, start, stop, wait_until_ready
from tests.helpers.settings import settings_env

CONFIGURATIONS = {
    "run": [],  # `make run`: everything from .streamlit/config.toml
    "watcher on": ["--server.fileWatcherType", "auto"],  # the configuration before issue 20
}
PHOTOS = ("cat.jpg", "dog_test_0.jpg", "bird.jpg", "owl.jpg")
READY_TEXT = "Add an image to see what the model makes of it"
TIMEOUT_MS = 300_000


@contextlib.contextmanager
def server(settings, extra_args: list[str], log_dir: Path):
    port = free_port()
    log_path = log_dir / f"streamlit-{port}.log"
    process = start([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                     "--server.address", "127.0.0.1", *extra_args],
                    log_path=log_path, cwd=PROJECT_ROOT, env={**os.environ, **settings_env(settings)})
    try:
        wait_until_ready(process, f"http://127.0.0.1:{port}/_stcore/health", log_path, 120)
        yield f"http://127.0.0.1:{port}", process
    finally:
        stop(process, timeout=15)


def wait_idle(page, quiet_ms: int = 600) -> None:
    """Until the app has not been running a script for ``quiet_ms`` (Streamlit's status widget is gone)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    quiet_since = None
    while time.monotonic() < deadline:
        busy = page.locator("[data-testid='stStatusWidget']").count() or page.locator(
            "[data-testid='stSpinner']").count()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif (time.monotonic() - quiet_since) * 1000 >= quiet_ms:
            return
        page.wait_for_timeout(100)
    raise TimeoutError("the app stayed busy")


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def cpu_percent(process: psutil.Process, seconds: float) -> float:
    everyone = [process, *process.children(recursive=True)]
    before = sum(sum(p.cpu_times()[:2]) for p in everyone)
    time.sleep(seconds)
    return (sum(sum(p.cpu_times()[:2]) for p in everyone if p.is_running()) - before) / seconds * 100


def measure(settings, extra_args: list[str], photos: list[Path], idle_seconds: float, log_dir: Path) -> dict:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    results = {}
    with server(settings, extra_args, log_dir) as (url, process), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        charts = page.locator("[data-testid='stVegaLiteChart']")
        upload = page.locator("input[type=file]").first

        def cold():
            page.goto(url)
            page.get_by_text(READY_TEXT).wait_for()
            wait_idle(page)

        def first_prediction():
            upload.set_input_files([str(photos[0])])
            charts.first.wait_for()
            wait_idle(page)

        def one_more():
            upload.set_input_files([str(p) for p in photos[:2]])
            charts.nth(1).wait_for()
            wait_idle(page)

        def four_with_gradcam_plus_plus():
            upload.set_input_files([str(p) for p in photos])
            charts.nth(len(photos) - 1).wait_for()
            wait_idle(page)
            page.get_by_text("Grad-CAM++", exact=True).first.click()  # the Method radio in the sidebar
            wait_idle(page)

        def faithfulness():
            page.get_by_text("Explanation details: faithfulness, compare").first.click()
            page.get_by_role("button", name="Compute faithfulness").first.click()
            page.get_by_text("Deletion").first.wait_for()
            wait_idle(page)

        def warm_reload():
            page.goto(url)
            page.get_by_text(READY_TEXT).wait_for()
            wait_idle(page)

        for label, step in (("cold page ready", cold), ("first prediction", first_prediction),
                            ("one more photo", one_more), ("Grad-CAM++ on 4 photos", four_with_gradcam_plus_plus),
                            ("faithfulness", faithfulness), ("warm page ready", warm_reload)):
            try:
                results[label] = f"{timed(step):.1f} s"
            except (PlaywrightError, TimeoutError) as exc:  # a step the page no longer offers: say so, go on
                results[label] = f"n/a ({type(exc).__name__})"
                print(f"  {label}: {str(exc).splitlines()[0][:160]}", flush=True)
        wait_idle(page)  # nothing left running before the idle measurement
        browser.close()
        time.sleep(2)  # the session's last rerun and cleanup
        results["idle CPU"] = f"{cpu_percent(psutil.Process(process.pid), idle_seconds):.1f} %"
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(CONFIGURATIONS), help="measure one configuration")
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    args = parser.parse_args()
    photos = [sample_photo(name) for name in PHOTOS]
    if any(photo is None for photo in photos):
        print(f"Needs the sample photos {', '.join(PHOTOS)} (IMGREC_SAMPLES_DIR or ../shared/photos).")
        return 1
    settings = default_model_settings()
    names = [args.only] if args.only else list(CONFIGURATIONS)
    print(f"machine: {machine()}")
    print(f"model: the default ({settings.default_model}); photos: {', '.join(PHOTOS)}")
    columns = {}
    with tempfile.TemporaryDirectory(prefix="imgrec-bench-app-") as logs:
        for name in names:
            print(f"measuring '{name}'…", flush=True)
            columns[name] = measure(settings, CONFIGURATIONS[name], photos, args.idle_seconds, Path(logs))
    steps = list(next(iter(columns.values())))
    width = max(len(step) for step in steps) + 2
    print()
    print("step".ljust(width) + "".join(f"{name:>22}" for name in names))
    for step in steps:
        print(step.ljust(width) + "".join(f"{columns[name][step]:>22}" for name in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

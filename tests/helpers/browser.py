"""Real-browser helpers: start ``streamlit run`` on a free port and drive Debian's Chromium with Playwright."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

from imgrec.core.settings import PROJECT_ROOT
from tests.helpers.servers import free_port, start, stop, wait_until_ready
from tests.helpers.settings import settings_env

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
# Without the background-networking flags Chromium keeps trying hosts this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def chromium_path() -> str:
    path = os.environ.get("IMGREC_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("Debian's chromium is not installed (`make test` installs it)")
    return path


@contextlib.contextmanager
def streamlit_server(settings, timeout: float = 90, address: str | None = "127.0.0.1", with_process: bool = False):
    """``streamlit run`` of the app; ``address=None`` leaves the address to ``.streamlit/config.toml``."""
    port = free_port()
    log_path = Path(settings.data_dir) / f"streamlit-{port}.log"
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    address_args = [] if address is None else ["--server.address", address]
    process = start(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         *address_args, "--server.headless", "true"],
        log_path=log_path, cwd=PROJECT_ROOT, env={**os.environ, **settings_env(settings)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, f"{url}/_stcore/health", log_path, timeout)
        yield (url, process) if with_process else url
    finally:
        stop(process, timeout=15)


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000, extra_args: tuple[str, ...] = ()):
    """``extra_args``: more Chromium switches, e.g. the fake camera's."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True,
                                             args=[*CHROMIUM_ARGS, *extra_args])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(90_000)
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

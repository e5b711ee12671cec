"""Issue 19, item 8: user and model text is plain text in the app, the app listens on 127.0.0.1 by default,
and with an admin token set its changes ask for it (a real Streamlit server, Chromium, AppTest)."""

from __future__ import annotations

import dataclasses
import http.server
import io
import threading

import psutil
import pytest
from PIL import Image

from tests.helpers.apptest import app_with_settings
from tests.helpers.browser import browser_page, screenshot, streamlit_server
from tests.helpers.probe import recorder

RECORDER = recorder()
_write_outcomes = RECORDER.fixture()


class CountingHandler(http.server.BaseHTTPRequestHandler):
    """Counts every request a browser makes to it: a rendered Markdown image or a followed link would."""

    hits: list[str] = []

    def do_GET(self):
        CountingHandler.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def bait_server():
    CountingHandler.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (20, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.browser
@pytest.mark.slow
def test_a_file_name_with_markdown_is_shown_as_written_and_fetches_nothing(tiny_settings, tmp_path, bait_server):
    settings = dataclasses.replace(tiny_settings, data_dir=tmp_path / "data", default_model="tiny-cnn")
    name = f"![t]({bait_server}/pixel.png) [x]({bait_server}/link) :red[boom] **b**.png"
    with streamlit_server(settings) as url, browser_page() as page:
        page.goto(url)
        page.get_by_text("Add an image to see what the model makes of it").wait_for()
        page.locator("input[type=file]").first.set_input_files([{"name": name, "mimeType": "image/png",
                                                                 "buffer": png()}])
        heading = page.locator("[data-testid='stHeadingWithActionElements'] h3").filter(has_text="boom")
        heading.first.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)  # time for a rendered image to be fetched, were there one
        shown = heading.first.inner_text().replace("\u2060", "")  # the invisible word joiners plain() adds
        links = page.locator(f"main a[href^='{bait_server}']").count()
        images = page.locator(f"main img[src^='{bait_server}']").count()
        screenshot(page, "predict-markdown-name")
    as_written = shown.strip() == name
    RECORDER.add("upload file name with a Markdown link, image and directive", "app (Chromium)",
                 "shown exactly as written; no link, no image, no request to the image's server",
                 f"heading text {'as written' if as_written else repr(shown)}; {links} links, {images} images, "
                 f"{len(CountingHandler.hits)} requests", as_written and links == images == 0 and not CountingHandler.hits,
                 note="before the fix the name became a live link and an image the browser fetched")
    assert as_written, shown
    assert links == images == 0
    assert CountingHandler.hits == []


@pytest.mark.browser
@pytest.mark.slow
def test_the_app_listens_on_loopback_only_by_default(tiny_settings, tmp_path):
    settings = dataclasses.replace(tiny_settings, data_dir=tmp_path / "data", default_model="tiny-cnn")
    with streamlit_server(settings, address=None, with_process=True) as (url, process):
        port = int(url.rsplit(":", 1)[1])
        owners = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        listening = {conn.laddr.ip for owner in owners for conn in owner.net_connections(kind="inet")
                     if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port}
    RECORDER.add("the app's listening address, as make run starts it", "app",
                 "127.0.0.1 only", ", ".join(sorted(listening)) or "nothing", listening == {"127.0.0.1"},
                 note="before the fix it listened on every interface (0.0.0.0 / ::)")
    assert listening == {"127.0.0.1"}


def test_with_an_admin_token_changes_ask_for_it(monkeypatch, tiny_settings, tmp_path):
    from imgrec.registry import catalog
    from tests.helpers.models import build_tiny_model, tiny_card
    from tests.helpers.settings import make_settings

    settings = make_settings(tmp_path, admin_token="s3cret")
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    catalog.save_model(build_tiny_model(seed=1), tiny_card(), settings)
    catalog.set_active_model("tiny-cnn", "1", settings)
    monkeypatch.setenv("IMGREC_ADMIN_TOKEN", settings.admin_token)
    with app_with_settings(monkeypatch, settings, page="pages/models.py") as at:
        at.run()
        at.selectbox(key="models.ref").set_value("tiny-cnn@2").run()
        locked = at.button(key="models.activate").disabled and at.button(key="models.delete").disabled
        at.text_input(key="app.admin_token").input("wrong").run()
        refused = at.button(key="models.activate").disabled and any("Wrong admin token" in e.value for e in at.error)
        at.text_input(key="app.admin_token").input("s3cret").run()
        unlocked = not at.button(key="models.activate").disabled
        at.button(key="models.activate").click().run()
        activated = catalog.active_model(settings) == ("tiny-cnn", "2")
        assert not at.exception, at.exception
    RECORDER.add("Models page changes with IMGREC_ADMIN_TOKEN set", "app",
                 "disabled until the token is entered; a wrong one is refused; the right one unlocks them",
                 f"locked {locked}, wrong refused {refused}, unlocked {unlocked}, make-active worked {activated}",
                 locked and refused and unlocked and activated,
                 note="before the fix anyone who reached the app could make active or delete without a token")
    assert locked and refused and unlocked and activated

"""The Predict page remembers (issue 20): uploads, results and sidebar settings survive a visit to another
page; many uploads get a results table with a CSV download; a classifier can draw its heatmap's box."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from imgrec.predlog.store import open_store
from tests.app.test_app_predict import png, tiny_active, without_stock_detectors
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.settings import make_settings
from ui.predict_results import csv_bytes


@pytest.fixture
def page_settings(tiny_settings, tmp_path, monkeypatch):
    without_stock_detectors(monkeypatch, tmp_path)
    return tiny_active(make_settings(tmp_path, models_dir=tiny_settings.models_dir))


def subheaders(at) -> list[str]:
    return [shown(s.value) for s in at.main.subheader]


def test_uploads_results_and_settings_survive_another_page(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        at.slider(key="predict.top_k").set_value(2).run()
        at.slider(key="predict.cam_opacity").set_value(0.8).run()
        at.radio(key="predict.cam_method").set_value("gradcam++").run()
        assert subheaders(at) == ["red.png"]
        at.switch_page("pages/analytics.py").run()
        assert not at.exception
        assert "predict.top_k" not in at.session_state  # Streamlit dropped the widget's own value
        at.switch_page("pages/predict.py").run()
        assert not at.exception, at.exception
        assert subheaders(at) == ["red.png"]  # the upload is back, with its result
        assert at.slider(key="predict.top_k").value == 2
        assert at.slider(key="predict.cam_opacity").value == 0.8
        assert at.radio(key="predict.cam_method").value == "gradcam++"
        assert any(shown(c).startswith("Grad-CAM++ for") for img in elements(at, "image") for c in img.captions)
        assert "1 uploaded image(s) kept: red.png" in [shown(c.value) for c in at.caption]
        # Adding a file to the (fresh) uploader keeps the earlier one; "Clear uploads" forgets both.
        at.file_uploader(key="predict.files").set_value([("blue.png", png((20, 20, 220)), "image/png")]).run()
        assert subheaders(at) == ["red.png", "blue.png"]
        at.button(key="predict.clear_uploads").click().run()
        assert not at.exception
        assert subheaders(at) == []
        assert "Add an image" in at.info[-1].value
    with open_store(page_settings) as store:
        assert store.count_predictions() == 2  # coming back predicted nothing again


def test_removing_a_file_in_the_uploader_forgets_it(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        uploader = at.file_uploader(key="predict.files")
        uploader.set_value([("red.png", png(), "image/png"), ("blue.png", png((20, 20, 220)), "image/png")]).run()
        assert subheaders(at) == ["red.png", "blue.png"]
        at.file_uploader(key="predict.files").set_value([("blue.png", png((20, 20, 220)), "image/png")]).run()
        assert subheaders(at) == ["blue.png"]


def test_many_uploads_get_a_results_table_and_csv(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value([
            ("red.png", png(), "image/png"), ("blue.png", png((20, 20, 220)), "image/png"),
            ("notes.jpg", b"not an image", "image/jpeg"),
        ]).run()
        assert not at.exception
        [table] = [frame for frame in at.dataframe if "verdict" in frame.value.columns]
        rows = table.value
        assert list(rows["file"]) == ["red.png", "blue.png", "notes.jpg"]
        assert rows["thumbnail"][0].startswith("data:image/png;base64,")
        assert rows["label"][0] in ("cat", "dog", "bird") and 0 < rows["score"][0] <= 1
        assert rows["verdict"][2] == "error" and "Unsupported image format" in rows["result"][2]
        assert set(rows["verdict"][:2]) <= {"confident", "uncertain"}
        assert all(why for why in rows["why"][:2])  # the verdict's one-line reason
        assert "Download the table (CSV)" in [b.label for b in elements(at, "download_button")]
        # What that button serves: the same rows without thumbnails.
        exported = pd.read_csv(io.BytesIO(csv_bytes(rows)))
        assert list(exported.columns) == ["file", "label", "score", "verdict", "why", "result"]
        assert list(exported["file"]) == ["red.png", "blue.png", "notes.jpg"]


def test_box_from_the_heatmap_on_request(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        before = [img.proto.imgs[0].url for img in elements(at, "image")]
        at.toggle(key="predict.cam_box").set_value(True).run()
        assert not at.exception
        after = [img.proto.imgs[0].url for img in elements(at, "image")]
        assert len(after) == len(before) == 3
        assert after[1] != before[1] and after[0] == before[0]  # only the overlay changed: the box drawn on it

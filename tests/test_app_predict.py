"""The Predict page under AppTest, with a real tiny model and a real SQLite log."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imgrec.store import open_store
from tests.apptest import app_with_settings, elements
from tests.conftest import make_settings


def png(colour=(200, 40, 40), size=(48, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def page_settings(tiny_settings, tmp_path):
    # The shared tiny model, a fresh database per test.
    return make_settings(tmp_path, models_dir=tiny_settings.models_dir)


def test_upload_shows_chart_overlay_and_logs_once(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        assert not at.exception
        assert "Add an image" in at.info[-1].value
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        assert not at.exception, at.exception
        assert [s.value for s in at.main.subheader] == ["red.png"]
        assert len(elements(at, "vega_lite_chart")) == 1  # the top-k chart
        assert len(elements(at, "image")) >= 3  # preview, Grad-CAM overlay, heatmap alone
        assert [b.label for b in elements(at, "download_button")] == ["Download overlay (PNG)"]
        assert "tiny-cnn@1" in at.caption[-1].value or any("tiny-cnn@1" in c.value for c in at.caption)
        # A rerun (moving the opacity slider) logs nothing new and recomputes nothing.
        at.slider(key="predict.cam_opacity").set_value(0.8).run()
        assert not at.exception
    with open_store(page_settings) as store:
        assert store.count_predictions() == 1


def test_bad_upload_is_an_error_message_and_others_still_predicted(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value(
            [("notes.jpg", b"not an image", "image/jpeg"), ("blue.png", png((20, 20, 220)), "image/png")]
        ).run()
        assert not at.exception
        assert [e.value for e in at.error] == [
            "Unsupported image format 'text'. Expected one of: JPEG, PNG, WebP, BMP, GIF, TIFF."
        ]
        assert [s.value for s in at.main.subheader] == ["notes.jpg", "blue.png"]
        assert len(elements(at, "vega_lite_chart")) == 1
    with open_store(page_settings) as store:
        assert store.count_predictions() == 1


def test_uncertain_verdict_follows_the_threshold(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        at.slider(key="predict.threshold").set_value(1.0).run()
        assert any("Uncertain" in w.value for w in at.warning)
        at.slider(key="predict.threshold").set_value(0.0).run()
        assert not any("Uncertain" in w.value for w in at.warning)
        assert at.success


def test_reruns_do_not_reload_the_model(monkeypatch, page_settings):
    from imgrec import registry

    calls = []
    original = registry.load_model
    monkeypatch.setattr(registry, "load_model", lambda *a, **k: calls.append(a) or original(*a, **k))
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        at.slider(key="predict.top_k").set_value(2).run()
        at.run()
    assert len(calls) == 1


def test_sample_pick_and_feedback_is_stored(monkeypatch, page_settings):
    page_settings.samples_dir.mkdir(parents=True)
    (page_settings.samples_dir / "red.png").write_bytes(png())
    (page_settings.samples_dir / "readme.txt").write_text("not offered")
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        assert at.multiselect(key="predict.samples").options == ["red.png"]
        at.multiselect(key="predict.samples").set_value(["red.png"]).run()
        assert not at.exception
        assert len(elements(at, "vega_lite_chart")) == 1
        at.selectbox(key="predict.fb_label.sample:red.png").set_value("dog")
        at.text_input(key="predict.fb_note.sample:red.png").set_value("it is a dog")
        at.button[[b.label for b in at.button].index("Send feedback")].click().run()
        assert not at.exception
        assert any("Thanks" in s.value for s in at.success)
    with open_store(page_settings) as store:
        [feedback] = store.get_prediction(1)["feedback"]
    assert (feedback["corrected_label"], feedback["wrong"], feedback["note"]) == ("dog", True, "it is a dog")


def test_faithfulness_on_request_and_target_class_changes_the_map(monkeypatch, page_settings):
    page_settings.samples_dir.mkdir(parents=True)
    (page_settings.samples_dir / "red.png").write_bytes(png())
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.multiselect(key="predict.samples").set_value(["red.png"]).run()
        assert not any(m.label == "Deletion AUC" for m in at.metric)  # only on request
        at.button(key="predict.faith_button.sample:red.png").click().run()
        assert not at.exception, at.exception
        labels = {m.label for m in at.metric}
        assert {"Deletion AUC", "Insertion AUC", "Random deletion", "Random insertion"} <= labels
        heatmaps = at.session_state["predict.heatmaps"]
        assert len(heatmaps) == 2  # this image: Grad-CAM and Grad-CAM++ (the compare tab) for the top class
        target = at.selectbox(key="predict.cam_target.sample:red.png")
        target.set_value(target.options[1]).run()
        assert not at.exception
        assert len(at.session_state["predict.heatmaps"]) == 4


def test_several_predicted_images_share_one_layer_picker(monkeypatch, page_settings):
    # Regression: the page-wide layer selectbox was drawn per image (StreamlitDuplicateElementKey).
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value(
            [(f"{n}.png", png((n * 60, 40, 40)), "image/png") for n in range(3)]
        ).run()
        assert not at.exception, at.exception
        assert [s.value for s in at.main.subheader] == ["0.png", "1.png", "2.png"]
        assert len([s for s in at.selectbox if s.key == "predict.cam_layer"]) == 1
    with open_store(page_settings) as store:
        assert store.count_predictions() == 3

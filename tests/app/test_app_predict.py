"""The Predict page under AppTest, with a real tiny model and a real SQLite log."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imgrec.explain import cam
from imgrec.predlog.store import open_store
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.settings import make_settings


def png(colour=(200, 40, 40), size=(48, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def tiny_active(settings):
    """``settings`` with tiny-cnn@1 marked active in its own data folder, so the page shows it first
    (and never falls back to, or registers, the stock ImageNet default)."""
    from imgrec.registry import catalog

    catalog.set_active_model("tiny-cnn", "1", settings)
    return settings


def main_panel_captions(at) -> list[str]:
    """Captions of the images outside expanders, in page order."""
    found = []

    def walk(node):
        if getattr(node, "type", None) == "expander":
            return
        if getattr(node, "type", None) == "image":
            found.extend(shown(caption) for caption in node.captions)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    return found


def without_stock_detectors(monkeypatch, tmp_path) -> None:
    """The app lists (so registers) the shipped detectors; not into the models folder shared by the tests."""
    monkeypatch.setenv("IMGREC_SHARED_DETECTION_DIR", str(tmp_path / "no-detectors"))


@pytest.fixture
def page_settings(tiny_settings, tmp_path, monkeypatch):
    # The shared tiny model, a fresh database per test.
    without_stock_detectors(monkeypatch, tmp_path)
    return tiny_active(make_settings(tmp_path, models_dir=tiny_settings.models_dir))


def test_upload_shows_chart_overlay_and_logs_once(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        assert not at.exception
        assert "Add an image" in at.info[-1].value
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        assert not at.exception, at.exception
        assert [shown(s.value) for s in at.main.subheader] == ["red.png"]
        assert len(elements(at, "vega_lite_chart")) == 1  # the top-k chart
        # The per-image panel, not a (collapsed) expander: original | overlay | heatmap.
        assert [c.split(" for ")[0] for c in main_panel_captions(at)] == ["48×40 PNG", "Grad-CAM", "Heatmap alone"]
        assert [b.label for b in elements(at, "download_button")] == ["Download overlay (PNG)"]
        assert any("tiny-cnn@1" in shown(c.value) for c in at.caption)
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
        assert [shown(e.value) for e in at.error] == [
            "Unsupported image format 'text'. Expected one of: JPEG, PNG, WebP, BMP, GIF, TIFF."
        ]
        assert [shown(s.value) for s in at.main.subheader] == ["notes.jpg", "blue.png"]
        assert len(elements(at, "vega_lite_chart")) == 1
    with open_store(page_settings) as store:
        assert store.count_predictions() == 1


def test_reruns_do_not_reload_the_model(monkeypatch, page_settings):
    from imgrec.registry import catalog

    calls = []
    original = catalog.load_model
    monkeypatch.setattr(catalog, "load_model", lambda *a, **k: calls.append(a) or original(*a, **k))
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
        assert len(heatmaps) == 1  # this image: Grad-CAM for the top class (no comparison asked for)
        target = at.selectbox(key="predict.cam_target.sample:red.png")
        target.set_value(target.options[1]).run()
        assert not at.exception
        assert len(at.session_state["predict.heatmaps"]) == 2


def test_several_predicted_images_share_one_layer_picker(monkeypatch, page_settings):
    # Regression: the page-wide layer selectbox was drawn per image (StreamlitDuplicateElementKey).
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value(
            [(f"{n}.png", png((n * 60, 40, 40)), "image/png") for n in range(3)]
        ).run()
        assert not at.exception, at.exception
        assert [shown(s.value) for s in at.main.subheader] == ["0.png", "1.png", "2.png"]
        assert len([s for s in at.selectbox if s.key == "predict.cam_layer"]) == 1
    with open_store(page_settings) as store:
        assert store.count_predictions() == 3


def image_captions(at) -> list[str]:
    return [shown(caption) for image in elements(at, "image") for caption in image.captions]


@pytest.fixture(scope="module")
def two_models_dir(tiny_settings, tmp_path_factory):
    """The tiny model and ``plain-cnn@1``, a model with other layer names (no ``conv1``)."""
    import shutil

    import keras

    from imgrec.registry import catalog
    from tests.helpers.models import TINY_CLASSES, TINY_SIZE, tiny_card

    settings = make_settings(tmp_path_factory.mktemp("two-models"))
    # Only the tiny model: earlier tests may have registered other models into the shared folder.
    shutil.copytree(tiny_settings.models_dir / "tiny-cnn", settings.models_dir / "tiny-cnn")
    keras.utils.set_random_seed(1)
    inputs = keras.Input((*TINY_SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(len(TINY_CLASSES), activation="softmax", name="predictions")(x)
    catalog.save_model(keras.Model(inputs, outputs), tiny_card("plain-cnn", "1"), settings)
    return settings.models_dir


class CountingSpy:
    """Wraps a function of an ``imgrec.explain`` module: counts the calls and still runs the real thing."""

    def __init__(self, monkeypatch, module, name: str):
        self.calls: list = []
        real = getattr(module, name)

        def spy(*args, **kwargs):
            self.calls.append(kwargs.get("method", "gradcam"))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)


def test_custom_layer_missing_from_the_next_model_falls_back_to_the_automatic_one(
    monkeypatch, tmp_path, two_models_dir
):
    without_stock_detectors(monkeypatch, tmp_path)
    settings = tiny_active(make_settings(tmp_path, models_dir=two_models_dir))
    with app_with_settings(monkeypatch, settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        assert at.selectbox(key="predict.model").options == ["tiny-cnn@1", "plain-cnn@1"]
        at.selectbox(key="predict.cam_layer").set_value("conv1").run()
        assert not at.exception, at.exception
        assert any("layer conv1" in c for c in image_captions(at))
        at.selectbox(key="predict.model").set_value("plain-cnn@1").run()
        assert not at.exception, at.exception
        assert not at.error
        assert any("conv1" in c.value and "automatic" in c.value for c in at.caption)
        assert at.selectbox(key="predict.cam_layer").value == "automatic (last conv layer)"
        assert any("layer features" in c for c in image_captions(at))


def test_heatmap_failures_are_messages_never_tracebacks(monkeypatch, page_settings):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cam, "gradcam", broken)
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        assert not at.exception, at.exception
        assert at.error and all("Something went wrong on our side (RuntimeError)" in e.value for e in at.error)
        assert len(elements(at, "vega_lite_chart")) == 1  # the prediction itself is still shown


def test_no_heatmap_work_when_off_and_comparison_only_on_request(monkeypatch, page_settings):
    spy = CountingSpy(monkeypatch, cam, "gradcam")
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.toggle(key="predict.cam_on").set_value(False).run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        assert not at.exception, at.exception
        assert len(elements(at, "vega_lite_chart")) == 1 and spy.calls == []  # predicted, nothing explained
        at.toggle(key="predict.cam_on").set_value(True).run()
        assert not at.exception, at.exception
        assert spy.calls == ["gradcam"]  # the shown method only: no comparison yet
        at.slider(key="predict.cam_opacity").set_value(0.8).run()
        at.selectbox(key="predict.cam_colormap").set_value("viridis").run()
        assert spy.calls == ["gradcam"]  # re-blended, not recomputed
        [compare] = [w for w in at.segmented_control if w.key.startswith("predict.compare_kind.")]
        compare.set_value("CAM methods").run()
        assert not at.exception, at.exception
        assert sorted(spy.calls) == ["gradcam", "gradcam++"]  # asked for: Grad-CAM++ beside Grad-CAM
        assert {"Grad-CAM", "Grad-CAM++"} <= set(image_captions(at))
        at.slider(key="predict.cam_opacity").set_value(0.3).run()
        assert sorted(spy.calls) == ["gradcam", "gradcam++"]
        at.toggle(key="predict.cam_on").set_value(False).run()
        assert not {"Grad-CAM", "Grad-CAM++"} & set(image_captions(at))
        assert len(spy.calls) == 2


def test_comparison_with_another_model_on_request(monkeypatch, tmp_path, two_models_dir):
    without_stock_detectors(monkeypatch, tmp_path)
    settings = tiny_active(make_settings(tmp_path, models_dir=two_models_dir))
    with app_with_settings(monkeypatch, settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        [compare] = [w for w in at.segmented_control if w.key.startswith("predict.compare_kind.")]
        compare.set_value("another model").run()
        assert not at.exception, at.exception
        assert not at.error
        [second] = [s for s in at.selectbox if s.key.startswith("predict.compare_model.")]
        assert second.value == "plain-cnn@1"
        assert [c.split(":")[0] for c in image_captions(at)[-2:]] == ["tiny-cnn@1", "plain-cnn@1"]


def test_a_removed_image_leaves_nothing_behind_in_the_session(monkeypatch, page_settings):
    from ui.explain_view import HEATMAPS

    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        uploader = at.file_uploader(key="predict.files")
        uploader.set_value([("red.png", png(), "image/png"), ("blue.png", png((0, 0, 255)), "image/png")]).run()
        assert not at.exception, at.exception
        inputs = {key[0] for key in at.session_state["predict.results"]}
        assert len(inputs) == 2 and {key[0] for key in at.session_state[HEATMAPS]} == inputs
        at.file_uploader(key="predict.files").set_value([("blue.png", png((0, 0, 255)), "image/png")]).run()
        assert [shown(s.value) for s in at.main.subheader] == ["blue.png"]
        kept = {key[0] for key in at.session_state["predict.results"]}
        assert len(kept) == 1 and {key[0] for key in at.session_state[HEATMAPS]} == kept
        at.file_uploader(key="predict.files").set_value([]).run()
        assert not at.session_state["predict.results"] and not at.session_state[HEATMAPS]


def test_reruns_keep_tensorflow_kernels(monkeypatch, page_settings):
    """Streamlit would call keras.backend.clear_session() after every run, dropping TensorFlow's kernel
    cache: every rerun's first prediction then cost ~250 ms instead of ~20 ms (measured)."""
    import keras

    cleared = []
    real_clear_session = keras.backend.clear_session
    monkeypatch.setattr(keras.backend, "clear_session", lambda *a, **k: cleared.append(1) or real_clear_session(*a, **k))
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        at.slider(key="predict.top_k").set_value(2).run()
        assert not at.exception, at.exception
        assert [shown(s.value) for s in at.main.subheader] == ["red.png"]
    assert cleared == []

"""The Predict page with a tiny real multi-label model: the label set found against each label's own threshold,
"no label found" instead of "uncertain", Grad-CAM and faithfulness of the label picked, and comparing with a
single-label classifier."""

from __future__ import annotations

import shutil

import pytest

from tests.app.test_app_predict import png, without_stock_detectors
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.multilabel_data import COLOURS, MULTILABEL_TASK
from tests.helpers.settings import make_settings

MODEL = "tiny-multilabel"
# Version 1 finds red and green in any image (threshold 0) and never blue or yellow (threshold 1); version 2
# finds nothing. Real decoding at real thresholds, with outputs known without training.
THRESHOLDS = {"1": [0.0, 0.0, 1.0, 1.0], "2": [1.0, 1.0, 1.0, 1.0]}


@pytest.fixture(scope="module")
def multilabel_models_dir(tiny_settings, tmp_path_factory):
    """The tiny classifier ``tiny-cnn@1`` and two versions of a tiny multi-label model."""
    import keras

    from imgrec.modeling.build import build_model
    from imgrec.registry import catalog
    from imgrec.registry.card import ModelCard
    from imgrec.tasks.multilabel import MultiLabelTask

    settings = make_settings(tmp_path_factory.mktemp("multilabel-models"))
    shutil.copytree(tiny_settings.models_dir, settings.models_dir)
    for version, thresholds in THRESHOLDS.items():
        keras.utils.set_random_seed(0)
        model = build_model("small_cnn", len(COLOURS), (32, 32), weights=None, head=MultiLabelTask().head)
        card = ModelCard(name=MODEL, version=version, backbone="small_cnn", input_size=(32, 32),
                         preprocessing="unit", class_names=tuple(COLOURS), dataset="generated",
                         task=MULTILABEL_TASK, decoding={"thresholds": thresholds})
        catalog.save_model(model, card, settings)
    return settings.models_dir


@pytest.fixture
def page_settings(multilabel_models_dir, tmp_path, monkeypatch):
    from imgrec.registry import catalog

    without_stock_detectors(monkeypatch, tmp_path)
    settings = make_settings(tmp_path, models_dir=multilabel_models_dir)
    catalog.set_active_model(MODEL, "1", settings)
    return settings


def image_captions(at) -> list[str]:
    return [shown(caption) for image in elements(at, "image") for caption in image.captions]


def test_the_label_set_grad_cam_per_label_and_faithfulness(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        assert at.selectbox(key="predict.model").value == f"{MODEL}@1"
        assert at.slider(key="predict.threshold").disabled  # each label has its own threshold
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        assert not at.exception, at.exception
        [found] = [shown(s.value) for s in at.success]
        assert found.startswith("Labels found: ")
        assert {part.split()[0] for part in found.removeprefix("Labels found: ").split(", ")} == {"red", "green"}
        assert not at.warning
        assert len(elements(at, "vega_lite_chart")) == 1  # every label's score against its threshold
        picker = next(s for s in at.selectbox if s.key.startswith("predict.cam_target."))
        assert sorted(picker.options[:2]) == ["green (found)", "red (found)"]  # found first, any label offered
        assert sorted(picker.options[2:]) == ["blue", "yellow"]
        best = picker.options[0].split()[0]
        assert any(c.startswith(f"Grad-CAM for “{best}”") for c in image_captions(at))
        picker.set_value("blue").run()
        assert not at.exception, at.exception
        assert any(c.startswith("Grad-CAM for “blue”") for c in image_captions(at))
        assert {key[-1].label for key in at.session_state["predict.heatmaps"]} == {best, "blue"}
        [faith] = [b for b in at.button if b.key.startswith("predict.faith_button.")]
        faith.click().run()
        assert not at.exception, at.exception
        assert [m.label for m in at.metric][:2] == ["Deletion AUC", "Insertion AUC"]
        assert not at.error


def test_no_label_found_replaces_uncertain(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.selectbox(key="predict.model").set_value(f"{MODEL}@2").run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        assert not at.exception, at.exception
        [warning] = [shown(w.value) for w in at.warning]
        assert warning.startswith("No label found")
        assert not at.success
        assert not any("ncertain" in shown(m.value) for m in (*at.markdown, *at.warning, *at.info))


def test_compare_a_multi_label_model_with_a_classifier(monkeypatch, page_settings):
    with app_with_settings(monkeypatch, page_settings) as at:
        at.run()
        at.file_uploader(key="predict.files").set_value([("red.png", png(), "image/png")]).run()
        [compare] = [w for w in at.segmented_control if w.key.startswith("predict.compare_kind.")]
        compare.set_value("another model").run()
        [second] = [s for s in at.selectbox if s.key.startswith("predict.compare_model.")]
        second.set_value("tiny-cnn@1").run()
        assert not at.exception, at.exception
        assert not at.error
        assert image_captions(at)[-2:] == [f"{MODEL}@1", "tiny-cnn@1"]
        summaries = [shown(c.value) for c in at.caption][-2:]
        assert {part.split()[0] for part in summaries[0].split(", ")} == {"red", "green"}  # the label set
        assert summaries[1].split()[0] in ("cat", "dog", "bird")  # the classifier's top-3

"""The Predict page with the shipped COCO detectors under AppTest: boxes, counts, sliders, class filter,
Grad-CAM and faithfulness of one box, and XL vs regular side by side."""

from __future__ import annotations

import pytest

from imgrec.registry import catalog
from imgrec.registry.detector_cards import DEFAULT_DETECTOR
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.settings import make_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def detector_page(detector_settings, photos_dir, tmp_path):
    settings = make_settings(tmp_path, models_dir=detector_settings.models_dir, samples_dir=photos_dir)
    catalog.set_active_model(DEFAULT_DETECTOR, None, settings)
    return settings


def counts(at) -> dict[str, int]:
    frames = [f.value for f in at.dataframe if list(f.value.columns) == ["class", "count"]]
    return {row["class"]: int(row["count"]) for frame in frames for _, row in frame.iterrows()}


def test_boxes_counts_sliders_and_class_filter(monkeypatch, detector_page):
    with app_with_settings(monkeypatch, detector_page, timeout=300) as at:
        at.run()
        ref = at.selectbox(key="predict.model").value
        assert ref.startswith(f"{DEFAULT_DETECTOR}@")
        assert at.slider(key=f"predict.score.{ref}").value == pytest.approx(0.3)  # the card's default
        at.multiselect(key="predict.samples").select("pets.jpg").run()
        assert not at.exception, at.exception
        assert counts(at) == {"dog": 2}
        [boxes] = [f.value for f in at.dataframe if "x1" in f.value.columns]
        assert list(boxes["class"]) == ["dog", "dog"] and (boxes["x2"] > boxes["x1"]).all()
        captions = [shown(c) for img in elements(at, "image") for c in img.captions]
        assert "2 object(s) · 512×430 JPEG" in captions
        assert any(c.startswith("Grad-CAM for box #1 dog") for c in captions)
        # A higher score threshold leaves one dog (0.988 and 0.965 per the detectors' provenance)...
        at.slider(key=f"predict.score.{ref}").set_value(0.98).run()
        assert counts(at) == {"dog": 1}
        # ...and a class filter without dogs leaves none, in words.
        at.slider(key=f"predict.score.{ref}").set_value(0.3).run()
        at.multiselect(key=f"predict.classes.{ref}").select("person").run()
        assert not at.exception
        assert counts(at) == {}
        assert any("No objects found" in shown(i.value) for i in at.info)
        at.multiselect(key=f"predict.classes.{ref}").unselect("person").run()
        # The second box explained, then its faithfulness, on request.
        at.selectbox(key="predict.box.sample:pets.jpg").set_value(1).run()
        captions = [shown(c) for img in elements(at, "image") for c in img.captions]
        assert any(c.startswith("Grad-CAM for box #2 dog") for c in captions)
        at.button(key="predict.faith_button.sample:pets.jpg").click().run()
        assert not at.exception, at.exception
        assert [m.label for m in at.metric][:2] == ["Deletion AUC", "Insertion AUC"]
        assert not at.error
        # A threshold that leaves one box moves the choice back to it.
        at.slider(key=f"predict.score.{ref}").set_value(0.98).run()
        assert not at.exception, at.exception
        assert at.selectbox(key="predict.box.sample:pets.jpg").value == 0


def test_xl_and_regular_side_by_side(monkeypatch, detector_page):
    with app_with_settings(monkeypatch, detector_page, timeout=300) as at:
        at.run()
        at.multiselect(key="predict.samples").select("grace_hopper.jpg").run()
        at.segmented_control(key="predict.compare_kind.sample:grace_hopper.jpg").set_value("another model").run()
        others = at.selectbox(key="predict.compare_model.sample:grace_hopper.jpg").options
        regular = next(o for o in others if o.startswith("coco-yolo-fastest@"))
        at.selectbox(key="predict.compare_model.sample:grace_hopper.jpg").set_value(regular).run()
        assert not at.exception, at.exception
        assert not at.error
        captions = [shown(c) for img in elements(at, "image") for c in img.captions]
        assert any(c.startswith(f"{DEFAULT_DETECTOR}@") for c in captions) and regular in captions
        summaries = [shown(c.value) for c in at.caption if "person" in shown(c.value)]
        assert len(summaries) >= 2  # each detector's own one-line result

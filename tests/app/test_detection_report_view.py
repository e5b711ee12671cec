"""The detection report view (wired into the Models page by its owner): headline, per-class table, PR curves, notes."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from imgrec.datasets.detection import load_detection_dataset
from imgrec.tasks.detection import Detection
from imgrec.tasks.detection_metrics import DETECTION_REPORT, evaluate_detections
from tests.helpers.apptest import elements, shown
from tests.helpers.detection_data import write_coco
from tests.helpers.settings import make_settings


def show_saved_report(models_dir: str, data_dir: str) -> None:
    """The AppTest script: the panel of a model whose folder holds a report (arguments come as text)."""
    from pathlib import Path

    from imgrec.registry.card import ModelCard
    from tests.helpers.settings import make_settings
    from ui.detection_report_view import detection_report_panel

    settings = make_settings(Path(models_dir).parent, models_dir=Path(models_dir), data_dir=Path(data_dir))
    card = ModelCard(name="toy", version="1", backbone="yolo", input_size=(32, 32), preprocessing="unit",
                     class_names=("dog", "person", "tv"), dataset="", task="detection")
    detection_report_panel(card, settings)


def test_the_panel_shows_the_saved_report_and_says_how_to_make_one_when_missing(tmp_path):
    settings = make_settings(tmp_path)
    at = AppTest.from_function(show_saved_report, args=(str(settings.models_dir), str(settings.data_dir)),
                               default_timeout=60)
    at.run()
    assert not at.exception
    assert "has no detection report yet" in shown(at.info[0].value)
    assert "python -m imgrec evaluate toy@1 --dataset PATH" in shown(at.info[0].value)

    dataset = load_detection_dataset(write_coco(tmp_path / "set"))
    found = [[box for box in image.boxes if box.label != "dog"] for image in dataset.images]  # every dog missed
    report = evaluate_detections(dataset.images, [[Detection(b.label, 0, 0.9, b.box, 0) for b in boxes] for boxes in found],
                                 model="toy@1", dataset="set", score_threshold=0.01, notes=["1 box was clipped."])
    report.save(settings.models_dir / "toy" / "1" / DETECTION_REPORT)
    at.run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"mAP@[.5:.95]": f"{report.map_50_95:.3f}", "mAP@0.5": f"{report.map_50:.3f}",
                       "mAP@0.75": f"{report.map_75:.3f}"}
    assert metrics["mAP@0.5"] == f"{2 / 3:.3f}"  # dog 0, person 1, tv 1
    table = at.dataframe[0].value
    assert table["class"].tolist() == ["dog", "person", "tv"] and table["AP"].tolist() == pytest.approx([0.0, 1.0, 1.0])
    assert len(elements(at, "arrow_vega_lite_chart") or elements(at, "vega_lite_chart")) == 1
    assert "Note: 1 box was clipped." in [shown(c.value) for c in at.caption]


"""The Analytics page's per-task sections under AppTest, on a log written through the store: detections,
label sets and video frames each get their section (and only when the log holds them), their filters,
and a label set corrected from the review queue."""

from __future__ import annotations

import io

import pandas as pd

from imgrec.predlog import stats
from imgrec.predlog.store import open_store
from imgrec.predlog.tabular import export_predictions
from tests.helpers.app_seeds import seed_analytics_log, seed_task_analytics_log
from tests.helpers.apptest import app_with_settings, elements, shown


def chart_titles(at) -> list[str]:
    import json

    return [json.loads(chart.proto.spec).get("title") for chart in elements(at, "vega_lite_chart")]


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_a_classifier_only_log_has_no_task_sections(monkeypatch, settings):
    seed_analytics_log(settings)
    with app_with_settings(monkeypatch, settings, page="pages/analytics.py") as at:
        at.run()
        assert not at.exception, at.exception
        assert not {"Detections", "Label sets", "Videos"} & {h.value for h in at.subheader}
        assert not [w for w in at.multiselect if w.key in ("analytics.detected", "analytics.set_labels")]
        assert "Video frames" not in metrics(at)


def test_detections_label_sets_and_videos_each_get_their_section(monkeypatch, settings):
    seed_task_analytics_log(settings)
    with app_with_settings(monkeypatch, settings, page="pages/analytics.py") as at:
        at.run()
        assert not at.exception, at.exception
        assert {"Detections", "Label sets", "Videos"} <= {h.value for h in at.subheader}
        titles = chart_titles(at)
        for title in ("Detected objects per hour (UTC), by class", "Objects per image", "Detection scores (every box)",
                      "Labels found (multi-label)", "Labels found together"):
            assert title in titles
        shown_metrics = metrics(at)
        assert (shown_metrics["Photo predictions"], shown_metrics["Video frames"], shown_metrics["Videos"]) == (
            "3", "3", "1")
        [videos] = [d.value for d in at.dataframe if "first_time_s" in d.value.columns]
        assert videos[["filename", "frames", "last_frame", "top_label"]].values.tolist() == [
            ["bikes.mp4", 3, 20, "bicycle"]]

        # The detected-class filter keeps the garden only (the one image with a dog).
        assert at.multiselect(key="analytics.detected").options == ["car", "dog", "person"]
        at.multiselect(key="analytics.detected").set_value(["dog"]).run()
        assert not at.exception, at.exception
        assert metrics(at)["Predictions"] == "1"
        # And the label filter: only the multi-label photo found a bicycle.
        at.multiselect(key="analytics.detected").set_value([]).run()
        at.multiselect(key="analytics.set_labels").set_value(["bicycle"]).run()
        assert not at.exception, at.exception
        assert metrics(at)["Predictions"] == "1"


def test_the_review_queue_corrects_a_label_set(monkeypatch, settings):
    ids = seed_task_analytics_log(settings)
    with app_with_settings(monkeypatch, settings, page="pages/analytics.py") as at:
        at.run()
        [queue] = [d.value for d in at.dataframe if "flagged" in d.value.columns]
        # The garden's unsure person (0.31) and the photo's unsure bicycle (0.42), least sure first.
        assert list(queue["filename"]) == ["garden.jpg", "tags.jpg"]
        assert list(queue["label_set"][1]) == ["person", "car", "bicycle"]
        chooser = at.multiselect(key=f"analytics.relabel_set.{ids['tags']}")
        assert chooser.value == ["person", "car", "bicycle"]
        chooser.set_value(["person", "car"]).run()  # there is no bicycle
        at.button(key=f"analytics.relabel_save.{ids['tags']}").click().run()
        assert not at.exception, at.exception
        assert f"Prediction {ids['tags']} relabelled as car, person." in shown(at.success[0].value)
        assert metrics(at)["Corrections"] == "1"
    with open_store(settings) as store:
        assert store.get_prediction(ids["tags"])["feedback"][-1]["corrected_labels"] == ["car", "person"]
        rows = pd.read_csv(io.BytesIO(export_predictions(store, stats.NO_FILTERS, "csv")))
    assert len(rows[rows["prediction_id"] == ids["street"]]) == 3  # one row per box
    tags = rows[rows["prediction_id"] == ids["tags"]]
    assert tags[["label_set", "corrected_labels"]].values.tolist() == [
        ['["person", "car", "bicycle"]', '["car", "person"]']]

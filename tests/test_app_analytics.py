"""The Analytics page under AppTest on a seeded SQLite log: KPIs, charts, filters, export, drift."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pandas as pd
import pytest
from streamlit.runtime.media_file_storage import MediaFileKind
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from imgrec import stats
from imgrec.log_export import FORMATS, export_predictions
from imgrec.store import open_store
from tests.apptest import app_with_settings, elements
from tests.store_fixtures import make_record
from ui import analytics_view as view

START = datetime(2026, 11, 1, 9, 0)


def seed(settings) -> None:
    """40 predictions over 20 days: cats (confident, app) then dogs (unsure, api); 3 cat rows flagged."""
    with open_store(settings) as store:
        ids = []
        for i in range(40):
            cat = i < 20
            ids.append(store.log_prediction(make_record(
                i, label="cat" if cat else "dog", score=0.9 if cat else 0.4, source="app" if cat else "api",
                latency_ms=10 + i, created_at=START + timedelta(days=i // 2),
            )))
        for prediction_id in ids[:3]:
            store.add_feedback(prediction_id, corrected_label="lynx", wrong=True, note="ears")


@pytest.fixture
def seeded(settings):
    seed(settings)
    return settings


def test_empty_log_says_so(monkeypatch, settings):
    with app_with_settings(monkeypatch, settings, page="pages/analytics.py") as at:
        at.run()
        assert not at.exception
        assert "No predictions logged yet" in at.info[0].value


def test_kpis_charts_and_filters(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page="pages/analytics.py") as at:
        at.run()
        assert not at.exception, at.exception
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Predictions"] == "40"
        assert metrics["Distinct images"] == "40"
        assert metrics["Mean top-1 confidence"] == "65.0%"
        assert metrics["Uncertain (< 50%)"] == "50.0%"
        assert metrics["Flagged wrong"] == "3"
        assert len(elements(at, "vega_lite_chart")) == 4
        # Filter to the API's predictions: only the 20 dogs remain, every number follows.
        at.multiselect(key="analytics.sources").set_value(["api"]).run()
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Predictions"] == "20" and metrics["Mean top-1 confidence"] == "40.0%"
        assert metrics["Flagged wrong"] == "0"
        # And a confidence range that matches nothing.
        at.slider(key="analytics.confidence").set_value((0.95, 1.0)).run()
        assert "No predictions match these filters" in at.info[-1].value


def test_review_queue_lists_flagged_first(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page="pages/analytics.py") as at:
        at.run()
        [table] = [d for d in at.dataframe if "top1_label" in d.value.columns]
        queue = table.value
        assert list(queue["flagged"][:3]) == [True, True, True]
        assert set(queue["corrected_label"][:3]) == {"lynx"}
        assert set(queue["top1_label"][3:]) == {"dog"}


def download_url(data: bytes, mime: str, file_name: str) -> str:
    """The URL a download button of exactly these bytes gets under AppTest (its media ids hash the content)."""
    storage = MemoryMediaFileStorage("/mock/media")
    return storage.get_url(storage.load_and_get_id(data, mime, MediaFileKind.DOWNLOADABLE, file_name))


def expected_export(settings, fmt: str, **filters) -> bytes:
    with open_store(settings) as store:
        return export_predictions(store, stats.Filters(**filters), fmt)


def test_export_downloads_the_filtered_rows(monkeypatch, seeded):
    cats, dogs = expected_export(seeded, "csv", labels=["cat"]), expected_export(seeded, "csv", labels=["dog"])
    assert len(pd.read_csv(io.BytesIO(cats))) == 20 and len(pd.read_csv(io.BytesIO(dogs))) == 20
    with app_with_settings(monkeypatch, seeded, page="pages/analytics.py") as at:
        at.run()
        at.multiselect(key="analytics.labels").set_value(["cat"]).run()
        assert elements(at, "download_button") == []
        at.button(key="analytics.prepare.csv").click().run()
        assert not at.exception
        [download] = elements(at, "download_button")
        assert download.label == "Download CSV"
        assert download.proto.url == download_url(cats, "text/csv", "predictions.csv")
        at.button(key="analytics.prepare.parquet").click().run()
        assert [b.label for b in elements(at, "download_button")] == ["Download CSV", "Download PARQUET"]
        parquet = next(b for b in elements(at, "download_button") if b.label == "Download PARQUET")
        data = expected_export(seeded, "parquet", labels=["cat"])
        assert set(pd.read_parquet(io.BytesIO(data))["corrected_label"].dropna()) == {"lynx"}
        assert parquet.proto.url == download_url(data, FORMATS["parquet"], "predictions.parquet")

        # Other filters: the files prepared for the cats are no longer offered, only "Prepare" again.
        at.multiselect(key="analytics.labels").set_value(["dog"]).run()
        assert not at.exception
        assert elements(at, "download_button") == []
        assert {b.label for b in at.button} >= {"Prepare CSV", "Prepare PARQUET"}
        at.button(key="analytics.prepare.csv").click().run()
        [download] = elements(at, "download_button")
        assert download.proto.url == download_url(dogs, "text/csv", "predictions.csv")
        assert set(pd.read_csv(io.BytesIO(dogs))["top1_label"]) == {"dog"}


def test_model_filter_keeps_exactly_the_chosen_versions(monkeypatch, settings):
    """Picking a@1 and b@2 must not also count a@2 and b@1."""
    counts = {("a", "1"): 1, ("a", "2"): 2, ("b", "1"): 4, ("b", "2"): 8}  # any mix shows in the total
    with open_store(settings) as store:
        index = 0
        for (name, version), count in counts.items():
            for _ in range(count):
                store.log_prediction(make_record(f"pair-{index}", model_name=name, model_version=version,
                                                 created_at=START + timedelta(hours=index)))
                index += 1
    with app_with_settings(monkeypatch, settings, page="pages/analytics.py") as at:
        at.run()
        assert {m.label: m.value for m in at.metric}["Predictions"] == "15"
        at.multiselect(key="analytics.models").set_value(["a@1", "b@2"]).run()
        assert not at.exception, at.exception
        assert {m.label: m.value for m in at.metric}["Predictions"] == "9"
        [table] = [d for d in at.dataframe if "model_version" in d.value.columns and "first_seen" in d.value.columns]
        assert list(zip(table.value["model_name"], table.value["model_version"])) == [("a", "1"), ("b", "2")]


def test_filters_from_keeps_each_model_with_its_version():
    filters = view.filters_from((START.date(), START.date()), ["a@1", "b@2", "c@"], [], [], (0.0, 1.0))
    assert filters.models == (("a", "1"), ("b", "2"), ("c", ""))
    assert (filters.model_names, filters.model_versions) == ((), ())
    assert view.filters_from((START.date(), START.date()), [], [], [], (0.0, 1.0)).models == ()


def test_drift_between_cat_days_and_dog_days(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page="pages/analytics.py") as at:
        at.run()
        at.date_input(key="analytics.drift_a").set_value((START.date(), (START + timedelta(days=9)).date())).run()
        at.date_input(key="analytics.drift_b").set_value(
            ((START + timedelta(days=10)).date(), (START + timedelta(days=19)).date())).run()
        assert not at.exception, at.exception
        texts = [w.value for w in at.warning] + [s.value for s in at.success]
        assert any("labels:" in t for t in texts), texts


def test_a_log_over_the_app_limit_gets_the_oldest_rows_and_a_pointer_to_the_cli(monkeypatch, seeded):
    from imgrec import log_export

    monkeypatch.setattr(log_export, "APP_ROW_LIMIT", 15)
    with app_with_settings(monkeypatch, seeded, page="pages/analytics.py") as at:
        at.run()
        assert any("oldest 15 of them" in i.value and "imgrec log-export" in i.value for i in at.info)
        at.button(key="analytics.prepare.csv").click().run()
        assert not at.exception, at.exception
        [download] = elements(at, "download_button")
        oldest = expected_export(seeded, "csv")
        assert download.proto.url != download_url(oldest, "text/csv", "predictions.csv")  # not every row
        with open_store(seeded) as store:
            capped = export_predictions(store, stats.NO_FILTERS, "csv", max_rows=15)
        assert download.proto.url == download_url(capped, "text/csv", "predictions.csv")

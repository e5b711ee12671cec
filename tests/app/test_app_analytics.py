"""The Analytics page under AppTest on a seeded SQLite log: KPIs, charts, filters, export, drift."""

from __future__ import annotations

import io
from datetime import timedelta

import pandas as pd
import pytest
from streamlit.runtime.media_file_storage import MediaFileKind
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

from imgrec.predlog import stats
from imgrec.predlog.store import open_store, review_thumbnail, utc_now
from imgrec.predlog.tabular import FORMATS, export_predictions
from tests.helpers.app_seeds import ANALYTICS_START, seed_analytics_log
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.store_fixtures import make_record
from ui import analytics_view as view


@pytest.fixture
def seeded(settings):
    seed_analytics_log(settings)
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


def review_table(at) -> pd.DataFrame:
    [table] = [d for d in at.dataframe if "top1_label" in d.value.columns and "flagged" in d.value.columns]
    return table.value


def test_review_queue_lists_flagged_first(monkeypatch, seeded):
    with app_with_settings(monkeypatch, seeded, page="pages/analytics.py") as at:
        at.run()
        # The three flagged cats were relabelled already: the list of what is left holds the unsure dogs.
        assert set(review_table(at)["top1_label"]) == {"dog"}
        at.toggle(key="analytics.show_reviewed").set_value(True).run()
        queue = review_table(at)
        assert list(queue["flagged"][:3]) == [True, True, True]
        assert set(queue["corrected_label"][:3]) == {"lynx"}
        assert set(queue["top1_label"][3:]) == {"dog"}


def test_relabel_and_this_is_right_from_the_queue_count_as_corrections(monkeypatch, settings, photos_dir):
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(photos_dir / "cat.jpg").convert("RGB"))
    start = utc_now() - timedelta(hours=1)  # within the upload retention, which also expires thumbnails
    with open_store(settings) as store:
        first = store.log_prediction(make_record("r1", label="dog", score=0.4, filename="garden/kitty.jpg",
                                                 thumbnail=review_thumbnail(pixels), created_at=start))
        second = store.log_prediction(make_record("r2", label="dog", score=0.45, filename="rex.jpg",
                                                  created_at=start + timedelta(minutes=5)))
    with app_with_settings(monkeypatch, settings, page="pages/analytics.py") as at:
        at.run()
        assert not at.exception, at.exception
        queue = review_table(at)
        assert list(queue["filename"]) == ["garden/kitty.jpg", "rex.jpg"]
        assert queue["thumbnail"][0].startswith("data:image/jpeg;base64,") and pd.isna(queue["thumbnail"][1])
        assert {m.label: m.value for m in at.metric}["Corrections"] == "0"
        assert len(elements(at, "image")) == 1  # the kept thumbnail beside the first card; the second has none
        at.selectbox(key=f"analytics.relabel.{first}").set_value("other").run()  # tiny-cnn is not registered here: its top-k labels are offered
        at.button(key=f"analytics.relabel_save.{first}").click().run()
        assert not at.exception, at.exception
        assert f"Prediction {first} relabelled as other." in shown(at.success[0].value)
        at.button(key=f"analytics.right.{second}").click().run()
        assert {m.label: m.value for m in at.metric}["Corrections"] == "2"
        assert "Nothing to review" in " ".join(i.value for i in at.info)
    with open_store(settings) as store:
        assert stats.summary(store).corrected == 1 and stats.summary(store).confirmed == 1
        assert store.get_prediction(first)["feedback"][-1]["corrected_label"] == "other"


def test_day_one_is_charted_per_hour_with_whole_counts(monkeypatch, settings):
    with open_store(settings) as store:
        for index, hour in enumerate((9, 9, 11, 15)):
            store.log_prediction(make_record(f"h{index}", created_at=ANALYTICS_START.replace(hour=hour)))
    with app_with_settings(monkeypatch, settings, page="pages/analytics.py") as at:
        at.run()
        assert not at.exception, at.exception
        charts = [chart for chart in elements(at, "vega_lite_chart") if "per hour" in chart.proto.spec]
        assert len(charts) == 2  # predictions and latency
        spec = charts[0].proto.spec
        assert '"tickMinStep": 1' in spec and '"format": "d"' in spec


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
                                                 created_at=ANALYTICS_START + timedelta(hours=index)))
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
    filters = view.filters_from((ANALYTICS_START.date(), ANALYTICS_START.date()), ["a@1", "b@2", "c@"], [], [], (0.0, 1.0))
    assert filters.models == (("a", "1"), ("b", "2"), ("c", ""))
    assert (filters.model_names, filters.model_versions) == ((), ())
    assert view.filters_from((ANALYTICS_START.date(), ANALYTICS_START.date()), [], [], [], (0.0, 1.0)).models == ()


def set_drift_windows(at, baseline_days: tuple[int, int], recent_days: tuple[int, int]) -> None:
    day = lambda offset: (ANALYTICS_START + timedelta(days=offset)).date()  # noqa: E731
    at.date_input(key="analytics.drift_a").set_value(tuple(map(day, baseline_days))).run()
    at.date_input(key="analytics.drift_b").set_value(tuple(map(day, recent_days))).run()
    assert not at.exception, at.exception


def drift_metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric if m.label in {"Confidence PSI", "KS statistic", "KS p-value",
                                                               "Label PSI"}}


def test_drift_is_detected_between_cat_days_and_dog_days_and_not_between_two_cat_windows(monkeypatch, settings):
    """Days 0-9 and 10-19: 32 confident cats each (same distribution); days 20-29: 32 unsure dogs."""
    per_window = 32  # at least stats.drift's min_predictions (30) in each window
    with open_store(settings) as store:
        for window, (label, score) in enumerate([("cat", 0.9), ("cat", 0.9), ("dog", 0.4)]):
            for i in range(per_window):
                store.log_prediction(make_record(
                    f"drift-{window}-{i}", label=label, score=score,
                    created_at=ANALYTICS_START + timedelta(days=10 * window, hours=7 * i),  # 7 h x 31 < 10 days
                ))
    with app_with_settings(monkeypatch, settings, page="pages/analytics.py") as at:
        at.run()
        set_drift_windows(at, (0, 9), (20, 29))
        [warning] = at.warning
        assert warning.value == ("**major shift** — confidence: major shift; labels: major shift. "
                                 "32 baseline vs 32 recent predictions.")
        assert not at.success
        metrics = drift_metrics(at)
        assert float(metrics["Label PSI"]) > stats.PSI_MAJOR and float(metrics["Confidence PSI"]) > stats.PSI_MAJOR
        assert float(metrics["KS statistic"]) == 1.0  # no score of the recent window is in the baseline
        [shifts] = [d.value for d in at.dataframe if "share_b" in d.value.columns]
        moved = {row.label: (row.share_a, row.share_b) for row in shifts.itertuples()}
        assert moved["cat"] == (1.0, 0.0) and moved["dog"] == (0.0, 1.0)

        set_drift_windows(at, (0, 9), (10, 19))
        assert not at.warning
        [success] = at.success
        assert success.value == ("**stable** — confidence: stable; labels: stable. "
                                 "32 baseline vs 32 recent predictions.")
        metrics = drift_metrics(at)
        assert float(metrics["Label PSI"]) == 0.0 and float(metrics["Confidence PSI"]) == 0.0


def test_drift_with_fewer_predictions_than_the_minimum_says_not_enough_data(monkeypatch, seeded):
    """The shared seed has 20 predictions a window, under stats.drift's min_predictions (30)."""
    with app_with_settings(monkeypatch, seeded, page="pages/analytics.py") as at:
        at.run()
        set_drift_windows(at, (0, 9), (10, 19))
        assert not at.warning and not at.success  # no verdict: neutral, not a green box
        assert ("**not enough data** — confidence: not enough data; labels: not enough data. "
                "20 baseline vs 20 recent predictions.") in [i.value for i in at.info]


def test_drift_over_the_last_predictions_on_a_young_log(monkeypatch, settings):
    with open_store(settings) as store:
        for index in range(120):  # one day: 60 confident cats, then 60 unsure dogs
            cat = index < 60
            store.log_prediction(make_record(f"n{index}", label="cat" if cat else "dog", score=0.9 if cat else 0.4,
                                             created_at=ANALYTICS_START + timedelta(minutes=index)))
    with app_with_settings(monkeypatch, settings, page="pages/analytics.py") as at:
        at.run()
        assert at.radio(key="analytics.drift_mode").value == "Last predictions"
        at.select_slider(key="analytics.drift_recent").set_value(50).run()
        assert not at.exception, at.exception
        [warning] = at.warning
        assert warning.value.startswith("**major shift**") and "50 baseline vs 50 recent predictions" in warning.value


def test_a_log_over_the_app_limit_gets_the_oldest_rows_and_a_pointer_to_the_cli(monkeypatch, seeded):
    from imgrec.predlog import tabular

    monkeypatch.setattr(tabular, "APP_ROW_LIMIT", 15)
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


def test_with_an_admin_token_reviews_wait_for_it(monkeypatch, seeded):
    monkeypatch.setenv("IMGREC_ADMIN_TOKEN", "s3cret")
    with app_with_settings(monkeypatch, seeded, page="pages/analytics.py") as at:
        at.run()
        assert not [b for b in at.button if b.key and b.key.startswith("analytics.right.")]
        assert any("needs the admin token" in c.value.lower() for c in at.caption)
        at.text_input(key="app.admin_token").input("s3cret").run()
        assert not at.exception, at.exception
        assert [b for b in at.button if b.key and b.key.startswith("analytics.right.")]

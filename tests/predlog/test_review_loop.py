"""The review queue as a relabelling loop, and analytics over a first day: thumbnails, file names,
"this is right" and relabel counted, hourly buckets, drift over the last N predictions."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import numpy as np
from PIL import Image

from imgrec.predlog import stats
from imgrec.predlog.store import REVIEW_THUMBNAIL_PX, Store, prune_expired_uploads, review_thumbnail
from imgrec.predlog.tabular import export_predictions
from tests.helpers.settings import make_settings
from tests.helpers.store_fixtures import make_record

pytest_plugins = ["tests.helpers.store_fixtures"]

THUMBNAIL = review_thumbnail(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8))
DAY_ONE = datetime(2026, 3, 1, 8, 0, 0)


def test_uncertain_predictions_keep_a_small_thumbnail_and_the_file_name(store):
    unsure = store.log_prediction(make_record("a", score=0.3, filename="holiday/IMG_0042.jpg", thumbnail=THUMBNAIL))
    store.log_prediction(make_record("b", score=0.95, filename="sure.jpg", thumbnail=THUMBNAIL))
    assert store.thumbnail(make_record("b").sha256) is None  # confident: nothing kept
    with Image.open(io.BytesIO(store.thumbnail(make_record("a").sha256))) as thumbnail:
        assert thumbnail.format == "JPEG" and max(thumbnail.size) == REVIEW_THUMBNAIL_PX
    queue = stats.review_queue(store, max_confidence=0.5)
    assert list(queue["prediction_id"]) == [unsure]
    assert queue["filename"][0] == "holiday/IMG_0042.jpg" and queue["thumbnail"][0].startswith(b"\xff\xd8")


def test_relabel_and_this_is_right_leave_the_queue_and_are_counted(store):
    ids = [store.log_prediction(make_record(seed, score=0.2 + seed / 100)) for seed in range(4)]
    store.add_feedback(ids[0], corrected_label="dog")  # relabelled
    store.add_feedback(ids[1], wrong=False)  # "this is right"
    store.add_feedback(ids[2], wrong=True)  # flagged, not yet relabelled
    to_do = stats.review_queue(store, max_confidence=0.5, reviewed=False)
    assert list(to_do["prediction_id"]) == [ids[2], ids[3]]  # flagged first
    assert len(stats.review_queue(store, max_confidence=0.5)) == 4
    summary = stats.summary(store)
    assert (summary.corrected, summary.confirmed, summary.flagged) == (1, 1, 2)


def test_a_spooled_record_keeps_its_file_name_and_thumbnail(store, tmp_path):
    from imgrec.predlog.spool import Spool

    spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
    assert spool.put(make_record("s", score=0.2, filename="late.jpg", thumbnail=THUMBNAIL))
    spool.replay(store)
    queue = stats.review_queue(store)
    assert list(queue["filename"]) == ["late.jpg"] and queue["thumbnail"][0] == THUMBNAIL


def test_the_export_names_each_file(store, tmp_path):
    store.log_prediction(make_record("x", filename="cat photo.png"))
    frame = stats.export_rows(store)
    assert list(frame["filename"]) == ["cat photo.png"]
    assert "cat photo.png" in export_predictions(store, stats.NO_FILTERS, "csv").decode()


def test_thumbnails_go_with_the_retention_setting(tmp_path):
    settings = make_settings(tmp_path, upload_retention_days=7)
    with Store(settings.database_url_resolved) as store:
        store.log_prediction(make_record("old", score=0.1, thumbnail=THUMBNAIL, created_at=datetime.now() - timedelta(days=8)))
        store.log_prediction(make_record("new", score=0.1, thumbnail=THUMBNAIL))
        prune_expired_uploads(store, settings)  # uploads themselves are not kept: thumbnails still expire
        assert store.thumbnail(make_record("old").sha256) is None
        assert store.thumbnail(make_record("new").sha256) is not None


def test_day_one_is_counted_per_hour(store):
    for hour, count in ((8, 2), (9, 1), (13, 3)):
        for index in range(count):
            store.log_prediction(make_record(created_at=DAY_ONE.replace(hour=hour, minute=index), latency_ms=10 * hour))
    assert stats.bucket_for(DAY_ONE.date(), DAY_ONE.date()) == "hour"
    assert stats.bucket_for(DAY_ONE.date(), DAY_ONE.date() + timedelta(days=5)) == "day"
    counts, latency = stats.over_time(store, stats.NO_FILTERS, "hour")
    assert list(counts["predictions"]) == [2, 1, 3]
    assert list(counts["time"]) == ["2026-03-01T08:00:00", "2026-03-01T09:00:00", "2026-03-01T13:00:00"]
    assert list(latency["p50_latency_ms"]) == [80, 90, 130]
    daily, _ = stats.over_time(store, stats.NO_FILTERS, "day")
    assert list(daily["predictions"]) == [6]


def test_drift_over_the_last_n_predictions(store):
    for index in range(60):  # one day: 30 confident, then 30 unsure predictions
        score = 0.95 if index < 30 else 0.35
        store.log_prediction(make_record(created_at=DAY_ONE + timedelta(minutes=index), score=score))
    baseline, recent = stats.recent_windows(store, recent=30)
    report = stats.drift(store, baseline, recent)
    assert (report.predictions_a, report.predictions_b) == (30, 30)
    assert report.verdict == "major shift"
    assert stats.recent_windows(store, stats.Filters(labels=["nothing"])) is None

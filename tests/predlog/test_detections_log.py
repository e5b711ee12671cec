"""A detector's boxes in the prediction log, on SQLite and PostgreSQL: migration 0005, writes, replays,
exports with one row per box, the review queue and the detected-class filter."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command

from imgrec.predlog import stats, tabular
from imgrec.predlog.store import (
    NO_DETECTIONS_LABEL,
    RecordInvalid,
    Store,
    alembic_config,
    detections_table,
    head_revision,
)
from tests.helpers.store_fixtures import fake_sha256, make_record

pytest_plugins = ["tests.helpers.store_fixtures"]

PERSON_AND_TIE = [("person", 0.95, 0.0, 34.0, 487.0, 600.0), ("tie", 0.35, 224.0, 436.0, 284.0, 539.0)]


def detector_record(seed, boxes, **overrides):
    return make_record(seed, model_name="coco-yolo-fastest-xl", top_k=[(b[0], b[1]) for b in boxes],
                       detections=boxes, **overrides)


def box_rows(store, prediction_id):
    with store.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(
            sa.select(detections_table.c["rank", "label", "score", "x1", "y1", "x2", "y2"])
            .where(detections_table.c.prediction_id == prediction_id).order_by(detections_table.c.rank))]


def test_migration_0005_adds_the_table_to_a_0004_database_and_goes_back(database_url):
    if database_url.startswith("sqlite"):
        from pathlib import Path

        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    engine = sa.create_engine(database_url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0004")
        connection.execute(sa.text("INSERT INTO uploads (sha256, byte_size, width, height, format, created_at) "
                                   "VALUES (:sha, 10, 4, 4, 'PNG', CURRENT_TIMESTAMP)"), {"sha": fake_sha256("old")})
        connection.execute(sa.text(
            "INSERT INTO predictions (upload_id, model_name, model_version, top_k, top1_label, top1_score, latency_ms, "
            "created_at, created_day, source) VALUES (1, 'm', '1', '[]', 'cat', 0.9, 1.0, CURRENT_TIMESTAMP, "
            "CURRENT_DATE, 'cli')"))
        assert "detections" not in sa.inspect(connection).get_table_names()
    engine.dispose()
    with Store(database_url) as store:  # opening migrates to head
        assert head_revision() == "0005"
        prediction_id = store.log_prediction(detector_record("new", PERSON_AND_TIE))
        assert [row[1] for row in box_rows(store, prediction_id)] == ["person", "tie"]
        assert store.get_prediction(1)["top1_label"] == "cat"
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
        assert "detections" not in sa.inspect(connection).get_table_names()
    engine.dispose()


def test_boxes_are_stored_best_first_and_a_replay_writes_them_once(store):
    record = detector_record("hopper", PERSON_AND_TIE, key="a" * 32)
    prediction_id = store.log_prediction(record)
    assert store.log_prediction(record) == prediction_id
    assert box_rows(store, prediction_id) == [(0, *PERSON_AND_TIE[0]), (1, *PERSON_AND_TIE[1])]
    row = store.get_prediction(prediction_id)
    assert (row["top1_label"], row["top1_score"]) == ("person", 0.95)


def test_a_detector_that_found_nothing_is_logged_with_no_boxes(store):
    prediction_id = store.log_prediction(detector_record("empty", []))
    row = store.get_prediction(prediction_id)
    assert (row["top1_label"], row["top1_score"], row["top_k"]) == (NO_DETECTIONS_LABEL, 0.0, [])
    assert box_rows(store, prediction_id) == []
    with pytest.raises(RecordInvalid, match="top_k is empty"):
        store.log_prediction(make_record("classifier", top_k=[]))


@pytest.mark.parametrize("box, words", [
    (("tie", 1.5, 0, 0, 1, 1), "score 1.5 for label 'tie' is not a probability"),
    (("tie", 0.5, 0, float("nan"), 1, 1), "is not (label, score, x1, y1, x2, y2) with finite numbers"),
])
def test_a_bad_box_is_refused_with_what_is_wrong(store, box, words):
    with pytest.raises(RecordInvalid) as caught:
        store.log_prediction(make_record("bad", detections=[box]))
    assert words in str(caught.value)


def test_export_gives_one_row_per_box_and_pages_never_split_a_prediction(store):
    classifier_id = store.log_prediction(make_record("cat"))
    detector_id = store.log_prediction(detector_record("hopper", PERSON_AND_TIE))
    empty_id = store.log_prediction(detector_record("empty", []))
    frame = pd.concat(list(stats.iter_export(store, page_size=1)))
    assert list(frame["prediction_id"]) == [classifier_id, detector_id, detector_id, empty_id]
    boxes = frame[frame["prediction_id"] == detector_id]
    assert list(boxes["detection_label"]) == ["person", "tie"]
    assert list(boxes["detection_rank"]) == [0, 1]
    assert list(boxes[["detection_x1", "detection_y1", "detection_x2", "detection_y2"]].iloc[1]) == [224, 436, 284, 539]
    assert frame[frame["prediction_id"] == classifier_id]["detection_label"].isna().all()
    csv = pd.read_csv(io.BytesIO(tabular.export_predictions(store, stats.NO_FILTERS, "csv")))
    assert len(csv) == 4 and list(csv.columns) == list(stats.EXPORT_COLUMNS)
    parquet = pd.read_parquet(io.BytesIO(tabular.export_predictions(store, stats.NO_FILTERS, "parquet")))
    assert list(parquet["detection_label"].fillna("")) == ["", "person", "tie", ""]


def test_a_low_score_box_beside_a_sure_one_reaches_the_review_queue(store):
    sure_id = store.log_prediction(detector_record("sure", [PERSON_AND_TIE[0]]))
    doubtful_id = store.log_prediction(detector_record("hopper", PERSON_AND_TIE))
    queue = stats.review_queue(store, max_confidence=0.5)
    assert doubtful_id in set(queue["prediction_id"]) and sure_id not in set(queue["prediction_id"])
    assert queue.set_index("prediction_id").loc[doubtful_id, "review_score"] == pytest.approx(0.35)


def test_filter_by_detected_class(store):
    store.log_prediction(detector_record("hopper", PERSON_AND_TIE))
    store.log_prediction(detector_record("person only", [PERSON_AND_TIE[0]]))
    store.log_prediction(make_record("cat"))
    assert stats.summary(store, stats.Filters(detected_labels=["tie"])).predictions == 1
    assert stats.summary(store, stats.Filters(detected_labels=["person", "tie"])).predictions == 2

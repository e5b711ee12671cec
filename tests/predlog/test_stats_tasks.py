"""Analytics queries over detections, label sets and video frames, on SQLite and PostgreSQL: real rows logged
through the store, then every per-task query, filter, the export's rows and the review queue (with a
corrected label set, migration 0010)."""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pandas as pd
import pytest

from imgrec.core.errors import StoreError
from imgrec.predlog import stats
from imgrec.predlog.store import NO_DETECTIONS_LABEL
from imgrec.predlog.tabular import export_predictions
from tests.helpers.store_fixtures import make_record

pytest_plugins = ["tests.helpers.store_fixtures"]

DAY_ONE = datetime(2026, 11, 3, 10, 0)
DAY_TWO = DAY_ONE + timedelta(days=1)


def box(label, score, offset=0.0):
    return (label, score, offset, offset, offset + 10.0, offset + 20.0)


def log_detections(store):
    """Day one: a street (2 persons, a car) and an empty road; day two: a dog beside an unsure person."""
    ids = {}
    for name, boxes, when in (
        ("street", [box("person", 0.92), box("car", 0.81, 5), box("person", 0.66, 9)], DAY_ONE),
        ("road", [], DAY_ONE + timedelta(hours=1)),
        ("garden", [box("dog", 0.88), box("person", 0.31, 3)], DAY_TWO),
    ):
        ids[name] = store.log_prediction(make_record(
            name, model_name="coco-yolo-fastest", top_k=[(b[0], b[1]) for b in boxes], detections=boxes,
            created_at=when))
    return ids


def log_label_sets(store):
    """Three multi-label predictions: {person, bicycle}, {person, car, bicycle} and {car} (bicycle unsure)."""
    ids = {}
    for name, found, when in (
        ("ride", [("person", 0.9, 0.5), ("bicycle", 0.7, 0.4)], DAY_ONE),
        ("traffic", [("person", 0.8, 0.5), ("car", 0.95, 0.5), ("bicycle", 0.42, 0.4)], DAY_ONE),
        ("parking", [("car", 0.99, 0.5)], DAY_TWO),
    ):
        ids[name] = store.log_prediction(make_record(
            name, model_name="street-tags", top_k=[(label, score) for label, score, _ in found] + [("dog", 0.05)],
            label_set=found, created_at=when))
    return ids


def log_video(store, seed="bikes.mp4", frames=(0, 10, 20), labels=("bicycle", "bicycle", "car")):
    """A video's processed frames as ``imgrec.video.process.log_frame`` logs them: one upload, frame metadata."""
    return [store.log_prediction(make_record(
        seed, label=label, score=0.8, source="video", filename=seed, created_at=DAY_TWO + timedelta(seconds=index),
        metadata={"video": {"frame": index, "time_s": index / 25, "fps": 25.0}}))
        for index, label in zip(frames, labels)]


def test_detection_charts_count_every_box_and_filter_by_detected_class(store):
    log_detections(store)
    store.log_prediction(make_record("a-classifier-photo", created_at=DAY_ONE))
    by_day = stats.objects_by_day(store)
    assert list(by_day.itertuples(index=False, name=None)) == [
        ("2026-11-03", "car", 1), ("2026-11-03", "person", 2), ("2026-11-04", "dog", 1), ("2026-11-04", "person", 1)]
    assert stats.objects_over_time(store, bucket="day").equals(by_day.rename(columns={"day": "time"}))
    by_hour = stats.objects_over_time(store, bucket="hour")
    assert list(by_hour.itertuples(index=False, name=None)) == [
        ("2026-11-03T10:00:00", "car", 1), ("2026-11-03T10:00:00", "person", 2),
        ("2026-11-04T10:00:00", "dog", 1), ("2026-11-04T10:00:00", "person", 1)]
    with pytest.raises(StoreError, match="Bucket 'week' is not one of: hour, day"):
        stats.objects_over_time(store, bucket="week")
    per_image = stats.objects_per_image(store)
    assert dict(zip(per_image["objects"], per_image["predictions"])) == {0: 1, 2: 1, 3: 1}  # no classifier row
    scores = stats.detection_score_histogram(store)
    assert scores["objects"].sum() == 5 and scores.loc[3, "objects"] == 1 and scores.loc[9, "objects"] == 1

    dogs = stats.Filters(detected_labels=["dog"])
    assert stats.summary(store, dogs).predictions == 1
    assert list(stats.objects_by_day(store, dogs)["label"]) == ["dog", "person"]  # that image's every box
    cars_or_dogs = stats.Filters(detected_labels=["car", "dog"])
    assert stats.summary(store, cars_or_dogs).predictions == 2

    found = stats.contents(store)
    assert found.detections and not found.label_sets and not found.video_frames
    assert found.detected_labels == ["car", "dog", "person"]


def test_export_gives_one_row_per_detection_and_low_boxes_reach_the_review_queue(store):
    ids = log_detections(store)
    rows = pd.read_csv(io.BytesIO(export_predictions(store, stats.NO_FILTERS, "csv")))
    assert len(rows) == 3 + 1 + 2  # a row per box, and one for the road where nothing was found
    street = rows[rows["prediction_id"] == ids["street"]]
    assert list(street["detection_label"]) == ["person", "car", "person"]
    assert list(street["detection_rank"]) == [0, 1, 2]
    road = rows[rows["prediction_id"] == ids["road"]]
    assert road["top1_label"].item() == NO_DETECTIONS_LABEL and pd.isna(road["detection_label"].item())

    queue = stats.review_queue(store, max_confidence=0.5)
    # The garden's best box is sure (0.88) but its person is not (0.31); the road found nothing (score 0).
    assert list(queue["prediction_id"]) == [ids["road"], ids["garden"]]
    assert list(queue["review_score"]) == pytest.approx([0.0, 0.31])


def test_label_counts_co_occurrence_and_the_label_filter(store):
    log_label_sets(store)
    store.log_prediction(make_record("a-classifier-photo", label="person", created_at=DAY_ONE))
    counts = stats.label_counts(store)
    assert list(zip(counts["label"], counts["predictions"])) == [("bicycle", 2), ("car", 2), ("person", 2)]
    assert list(counts["share"]) == pytest.approx([2 / 3] * 3)  # of the three predictions with a set
    pairs = {(row.label_a, row.label_b): row.predictions for row in stats.label_co_occurrence(store).itertuples()}
    assert pairs[("person", "bicycle")] == pairs[("bicycle", "person")] == 2
    assert pairs[("car", "bicycle")] == 1 and pairs[("car", "car")] == 2
    assert ("car", "dog") not in pairs  # dog was scored but never found

    with_cars = stats.Filters(set_labels=["car"])
    assert stats.summary(store, with_cars).predictions == 2
    assert dict(zip(*stats.label_counts(store, with_cars)[["label", "predictions"]].T.values)) == {
        "car": 2, "person": 1, "bicycle": 1}
    found = stats.contents(store)
    assert found.label_sets and not found.detections
    assert found.set_labels == ["bicycle", "car", "person"] and found.label_set_models == ["street-tags@1"]


def test_a_label_set_is_exported_reviewed_and_corrected_as_a_set(store):
    ids = log_label_sets(store)
    rows = stats.export_rows(store)
    assert len(rows) == 3  # one row per prediction, not per label
    assert rows.set_index("prediction_id").loc[ids["traffic"], "label_set"] == '["car", "person", "bicycle"]'

    queue = stats.review_queue(store, max_confidence=0.5)
    [row] = queue.to_dict("records")  # traffic: its bicycle scored 0.42 against a 0.4 threshold
    assert row["prediction_id"] == ids["traffic"] and row["review_score"] == pytest.approx(0.42)
    assert row["label_set"] == ["car", "person", "bicycle"]

    store.add_feedback(ids["traffic"], corrected_labels=["person", "car", "person"], wrong=True)
    assert store.get_prediction(ids["traffic"])["feedback"][-1]["corrected_labels"] == ["car", "person"]
    assert stats.summary(store).corrected == 1
    assert stats.review_queue(store, max_confidence=0.5, reviewed=False).empty  # corrected: off the to-do list
    again = stats.review_queue(store, max_confidence=0.5).to_dict("records")[0]
    assert again["corrected_labels"] == ["car", "person"]
    exported = stats.export_rows(store).set_index("prediction_id")
    assert exported.loc[ids["traffic"], "corrected_labels"] == '["car", "person"]'

    store.add_feedback(ids["parking"], corrected_labels=[], wrong=True)  # nothing there at all: still a correction
    assert stats.summary(store).corrected == 2
    with pytest.raises(StoreError, match="corrected_labels must be a list of label names, got 'car'"):
        store.add_feedback(ids["parking"], corrected_labels="car")


def test_video_frames_are_told_from_photos(store):
    log_video(store)
    log_video(store, seed="other.mp4", frames=(0,), labels=("dog",))
    store.log_prediction(make_record("photo", label="bicycle", created_at=DAY_ONE))
    assert stats.media(store) == {"photo_predictions": 1, "frame_predictions": 4, "videos": 2}
    assert stats.media(store, stats.Filters(sources=["app"])) == {
        "photo_predictions": 1, "frame_predictions": 0, "videos": 0}
    videos = stats.videos(store).set_index("filename")
    bikes = videos.loc["bikes.mp4"]
    assert (bikes["frames"], bikes["first_frame"], bikes["last_frame"]) == (3, 0, 20)
    assert (bikes["first_time_s"], bikes["last_time_s"]) == pytest.approx((0.0, 0.8))
    assert bikes["top_label"] == "bicycle"
    assert list(videos.index) == ["bikes.mp4", "other.mp4"]  # newest frame first: bikes' last is 20 s later
    assert stats.contents(store).video_frames

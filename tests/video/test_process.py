"""A video through real models: JSON per frame, the annotated MP4 (atomic), the log, the per-frame tables."""

from __future__ import annotations

import io
import json
from collections import Counter

import av
import pandas as pd
import pytest
import sqlalchemy as sa

from imgrec.inference.service import PredictionLog
from imgrec.tasks.base import DecodeOptions
from imgrec.video.decode import VideoError, open_video
from imgrec.video.process import process_video, results_table, table_bytes, timeline, write_table
from tests.helpers.settings import make_settings
from tests.helpers.video import bikes_frames, bikes_path, write_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", bikes_frames(9, (128, 54)))


def test_a_classifier_labels_every_nth_frame_and_writes_the_annotated_video(tmp_path, clip, tiny_predictor):
    settings = make_settings(tmp_path, video_log_every=2)
    output = tmp_path / "out" / "annotated.mp4"
    prediction_log = PredictionLog(settings, serving=False)
    with open_video(clip, settings) as video:
        items = list(process_video(tiny_predictor, video, DecodeOptions(top_k=2), every=2, output=output,
                                   prediction_log=prediction_log, filename="clip.mp4"))
    lines = [item.to_json() for item in items]
    assert [line["frame"] for line in lines] == [0, 2, 4, 6, 8]
    assert [line["time_s"] for line in lines] == pytest.approx([0, 0.08, 0.16, 0.24, 0.32], abs=0.005)
    assert all(len(line["predictions"]) == 2 and line["predictions"][0]["label"] in {"cat", "dog", "bird"}
               for line in lines)
    # Every 2nd processed frame is logged (frames 0, 4, 8), the video as the upload, the frame in the metadata.
    assert [line.get("prediction_id") is not None for line in lines] == [True, False, True, False, True]
    with prediction_log.store().engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT source, metadata FROM predictions ORDER BY id")).all()
    prediction_log.close()
    assert [row.source for row in rows] == ["video"] * 3
    assert [(json.loads(row.metadata) if isinstance(row.metadata, str) else row.metadata)["video"]["frame"]
            for row in rows] == [0, 4, 8]

    with av.open(str(output)) as annotated:
        stream = annotated.streams.video[0]
        drawn = [frame.to_ndarray(format="rgb24") for frame in annotated.decode(stream)]
    assert len(drawn) == 5 and drawn[0].shape == (54, 128, 3)
    original = bikes_frames(1, (128, 54))[0]
    # The label tag is drawn in the top-left corner; the rest of the frame is the video's.
    assert abs(drawn[0][:8, :30].astype(int) - original[:8, :30].astype(int)).mean() > 20
    assert abs(drawn[0][30:, 60:].astype(int) - original[30:, 60:].astype(int)).mean() < 15
    assert sorted(p.name for p in output.parent.iterdir()) == ["annotated.mp4"]

    table = results_table(items)
    assert list(table.columns[:5]) == ["frame", "time_s", "rank", "label", "score"]
    assert len(table) == 10 and table["x1"].isna().all()
    counts = timeline(table)
    assert counts.sum(axis=1).tolist() == [1] * 5  # one top label per processed frame
    assert pd.read_csv(io.BytesIO(table_bytes(table, "csv")))["label"].tolist() == table["label"].tolist()
    parquet = write_table(table, tmp_path / "frames.parquet")
    assert pd.read_parquet(parquet)["frame"].tolist() == table["frame"].tolist()


def test_a_broken_video_leaves_no_annotated_file(tmp_path, tiny_predictor):
    settings = make_settings(tmp_path)
    data = write_clip(tmp_path / "clip.mp4", bikes_frames(27, (64, 28)), movflags="faststart").read_bytes()
    output = tmp_path / "out" / "annotated.mp4"
    with open_video(data[: int(len(data) * 0.6)], settings) as video:
        with pytest.raises(VideoError, match="truncated"):
            list(process_video(tiny_predictor, video, DecodeOptions(), output=output))
    assert list(output.parent.iterdir()) == []


def test_the_detector_finds_people_and_cars_in_bikes(tmp_path, detector_predictor):
    with open_video(bikes_path(), make_settings(tmp_path)) as video:
        items = list(process_video(detector_predictor, video, DecodeOptions(score_threshold=0.3), every=50))
    assert [item.index for item in items] == [0, 50, 100, 150, 200]
    found = Counter(d["label"] for item in items for d in item.to_json()["detections"])
    assert found["person"] >= 1 and found["car"] >= 1, found
    table = results_table(items)
    boxes = table[table["label"].notna()]
    assert ((boxes["x1"] >= 0) & (boxes["x2"] <= 640) & (boxes["y2"] <= 272) & (boxes["x1"] < boxes["x2"])).all()
    assert timeline(table, top=1).sum().sum() == len(boxes)  # a detector's timeline counts every box
    with pytest.raises(Exception, match="Expected one of: csv, parquet"):
        table_bytes(table, "xlsx")

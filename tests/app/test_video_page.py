"""The Video page under AppTest with a real tiny model: a clip processed into a timeline, the annotated
video and the per-frame downloads, frames in the log; hostile files get a message, not a traceback."""

from __future__ import annotations

import pytest

from imgrec.predlog.store import open_store
from imgrec.registry import catalog
from tests.helpers.apptest import app_with_settings, elements, shown
from tests.helpers.settings import make_settings, own_models_dir
from tests.helpers.video import bikes_frames, write_clip

PAGE = "pages/video.py"


@pytest.fixture
def settings(tmp_path, tiny_settings):
    settings = make_settings(tmp_path, models_dir=own_models_dir(tiny_settings, tmp_path))
    catalog.set_active_model("tiny-cnn", "1", settings)
    return settings


def test_a_clip_gives_a_timeline_the_annotated_video_and_downloads(monkeypatch, tmp_path, settings):
    clip = write_clip(tmp_path / "clip.mp4", bikes_frames(6, (96, 40))).read_bytes()
    monkeypatch.setenv("IMGREC_VIDEO_LOG_EVERY", "2")  # every 2nd processed frame: frames 0 and 4
    with app_with_settings(monkeypatch, settings, PAGE) as at:
        at.run()
        assert not at.exception
        at.number_input(key="video.every").set_value(2).run()
        at.file_uploader(key="video.file").set_value([("street.mp4", clip, "video/mp4")]).run()
        assert not at.exception, at.exception
        assert not at.error
        assert not at.warning, [w.value for w in at.warning]
        assert any("3 frames processed" in shown(caption.value) for caption in at.caption)
        assert len(elements(at, "vega_lite_chart")) == 1
        assert len(elements(at, "video")) == 1
        labels = [button.proto.label for button in elements(at, "download_button")]
        assert labels == ["Annotated video", "Frames (CSV)", "Frames (Parquet)"]
        table = at.dataframe[0].value
        assert table["frame"].unique().tolist() == [0, 2, 4]
    store = open_store(settings)
    try:
        summary = store.engine.connect().exec_driver_sql("SELECT source, count(*) FROM predictions GROUP BY source").all()
    finally:
        store.close()
    assert [tuple(row) for row in summary] == [("video", 2)]


def test_hostile_files_get_a_message(monkeypatch, tmp_path, settings):
    with app_with_settings(monkeypatch, settings, PAGE) as at:
        at.run()
        at.file_uploader(key="video.file").set_value([("fake.mp4", b"no video here", "video/mp4")]).run()
        assert not at.exception
        assert "Expected MP4, AVI, WebM or MOV" in shown(at.error[0].value)
        at.file_uploader(key="video.file").set_value([("empty.webm", b"", "video/webm")]).run()
        assert not at.exception
        assert shown(at.error[0].value) == "The file is empty (0 bytes). Expected a video (MP4, AVI, WebM or MOV)."

"""Video decoding: every accepted container, every Nth frame, and hostile files refused by name."""

from __future__ import annotations

import pytest

from imgrec.video.decode import UnsupportedVideoError, VideoError, open_video
from tests.helpers.settings import make_settings
from tests.helpers.video import CONTAINERS, bikes_frames, bikes_path, write_clip

SIZE = (96, 40)


@pytest.fixture(scope="module")
def frames():
    return bikes_frames(7, SIZE)


@pytest.mark.parametrize("suffix, shown", [(".mp4", "MP4"), (".mov", "MOV"), (".avi", "AVI"), (".webm", "WebM")])
def test_each_accepted_container_decodes_every_nth_frame(tmp_path, frames, suffix, shown):
    path = write_clip(tmp_path / f"clip{suffix}", frames)
    with open_video(path, make_settings(tmp_path)) as video:
        assert (video.info.format, video.info.width, video.info.height) == (shown, *SIZE)
        assert video.info.fps == pytest.approx(25)
        decoded = list(video.frames(every=3))
    assert [frame.index for frame in decoded] == [0, 3, 6]
    assert [frame.time_s for frame in decoded] == pytest.approx([0, 0.12, 0.24], abs=0.005)
    assert decoded[0].pixels.shape == (SIZE[1], SIZE[0], 3)
    # The decoded frames are the clip's (lossy codecs: close, not equal).
    assert abs(decoded[1].pixels.astype(int) - frames[3].astype(int)).mean() < 12


def test_the_shared_clip(tmp_path):
    with open_video(bikes_path(), make_settings(tmp_path)) as video:
        info = video.info
        assert (info.format, info.codec, info.width, info.height, info.frame_count) == ("MP4", "h264", 640, 272, 250)
        assert info.sha256 == "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5"
        assert [frame.index for frame in video.frames(every=100)] == [0, 100, 200]


def _refusal(source, settings, kind=VideoError) -> str:
    with pytest.raises(kind) as caught:
        with open_video(source, settings) as video:
            list(video.frames())
    return str(caught.value)


def test_hostile_files_are_refused_naming_what_was_received(tmp_path, frames, photos_dir):
    settings = make_settings(tmp_path)
    clip = write_clip(tmp_path / "clip.mp4", frames).read_bytes()
    assert _refusal(b"", settings) == "The file is empty (0 bytes). Expected a video (MP4, AVI, WebM or MOV)."
    assert "it starts with b'hello wo'" in _refusal(b"hello world, not a video", settings, UnsupportedVideoError)
    photo = (photos_dir / "cat.jpg").read_bytes()
    assert "Expected MP4, AVI, WebM or MOV" in _refusal(photo, settings, UnsupportedVideoError)
    message = _refusal(clip[: len(clip) // 2], settings)
    assert message.startswith("The MP4 file is corrupt or truncated") and "'<none>'" not in message
    assert "is not a file" in _refusal(tmp_path / "missing.mp4", settings)
    assert _refusal(clip, make_settings(tmp_path, video_max_bytes=1000)) == (
        f"The video is {len(clip) / 1e6:.1f} MB. Expected at most 0.0 MB.")
    assert _refusal(clip, make_settings(tmp_path, video_max_duration_s=0.1)) == (
        "The video is 0.3 s long. Expected at most 0.1 s.")
    assert "Expected at most 0.0 megapixels" in _refusal(clip, make_settings(tmp_path, max_pixels=1000))


def test_a_clip_cut_inside_its_frames_is_refused_as_truncated(tmp_path, frames):
    # The index first (faststart), then the frames: cutting the end keeps a readable header.
    clip = write_clip(tmp_path / "clip.mp4", frames * 3, movflags="faststart").read_bytes()
    message = _refusal(clip[: int(len(clip) * 0.6)], make_settings(tmp_path))
    assert "truncated" in message and "MP4" in message


def test_a_webm_without_a_video_stream_is_refused(tmp_path):
    import av
    import numpy as np

    path = tmp_path / "sound.webm"
    with av.open(str(path), mode="w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 960), np.int16), format="s16", layout="mono")
        frame.sample_rate = 48000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert _refusal(path, make_settings(tmp_path)).startswith("The WebM file has no video stream")


def test_every_must_be_positive(tmp_path, frames):
    with open_video(write_clip(tmp_path / "clip.mp4", frames), make_settings(tmp_path)) as video:
        with pytest.raises(VideoError, match="every=0. Expected a whole number of 1 or more."):
            list(video.frames(every=0))


def test_every_container_listed_is_accepted():
    from imgrec.video.decode import ACCEPTED_EXTENSIONS

    assert {suffix.lstrip(".") for suffix in CONTAINERS} <= set(ACCEPTED_EXTENSIONS)

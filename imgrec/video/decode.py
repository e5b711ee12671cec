"""Defensive video decoding with PyAV: size, container, stream and duration checked before any frame is decoded."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgrec.core.errors import ImgrecError, first_line
from imgrec.core.settings import Settings

ACCEPTED = "MP4, AVI, WebM or MOV"
ACCEPTED_EXTENSIONS = ("mp4", "m4v", "avi", "webm", "mov")
# FFmpeg's demuxer name -> the format we show people (MP4 and MOV share a demuxer; the brand tells them apart).
DEMUXERS = {"mov,mp4,m4a,3gp,3g2,mj2": "MP4", "avi": "AVI", "matroska,webm": "WebM"}
QUICKTIME_BRAND = "qt  "


class VideoError(ImgrecError):
    """A video file we cannot use (empty, too large, too long, corrupt, truncated); says what was received."""


class UnsupportedVideoError(VideoError):
    """The content is not one of the accepted video formats at all (as opposed to a broken accepted one)."""


@dataclass(frozen=True)
class VideoInfo:
    format: str  # "MP4", "MOV", "AVI" or "WebM"
    codec: str
    width: int
    height: int
    fps: float
    duration_s: float
    frame_count: int  # as the container declares it; 0 when it does not say
    byte_size: int
    sha256: str


@dataclass(frozen=True)
class VideoFrame:
    index: int  # position in the video, counting every frame (processed or not)
    time_s: float
    pixels: np.ndarray  # (height, width, 3) uint8 RGB


def _sniffed_format(data: bytes) -> str | None:
    """The accepted container the first bytes announce, or None: refused before FFmpeg sees anything else."""
    if data[4:8] == b"ftyp":
        return "MP4"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "AVI"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM"
    return None


def _ffmpeg_reason(exc: Exception) -> str:
    """FFmpeg's own words for a failure, without PyAV's errno and placeholder file name."""
    return getattr(exc, "strerror", None) or first_line(exc)


def read_video_file(path: Path, max_bytes: int) -> bytes:
    """A video file's bytes, refusing a missing, non-regular or too large file before reading it."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path} is not a file. Expected a video file ({ACCEPTED}).")
    size = path.stat().st_size
    _check_size(size, max_bytes)
    return path.read_bytes()


def _check_size(size: int, max_bytes: int) -> None:
    if size == 0:
        raise VideoError(f"The file is empty (0 bytes). Expected a video ({ACCEPTED}).")
    if size > max_bytes:
        raise VideoError(f"The video is {size / 1e6:.1f} MB. Expected at most {max_bytes / 1e6:.1f} MB.")


class Video:
    """An opened, checked video; ``frames(every)`` decodes it. Use as a context manager (or call ``close``)."""

    def __init__(self, data: bytes, settings: Settings):
        import av

        _check_size(len(data), settings.video_max_bytes)
        sniffed = _sniffed_format(data)
        if sniffed is None:
            raise UnsupportedVideoError(f"The file is not a video we accept (it starts with {data[:8]!r}). "
                                        f"Expected {ACCEPTED}.")
        self.data = data
        self.settings = settings
        try:
            self._container = av.open(io.BytesIO(data), mode="r")
        except (av.error.FFmpegError, ValueError) as exc:
            raise VideoError(f"The {sniffed} file is corrupt or truncated: FFmpeg cannot read it ({_ffmpeg_reason(exc)}). "
                             f"Expected a complete {ACCEPTED} file.") from None
        try:
            self.info = self._check(sniffed)
        except BaseException:
            self._container.close()
            raise

    def _check(self, sniffed: str) -> VideoInfo:
        container = self._container
        shown = DEMUXERS.get(container.format.name)
        if shown is None:
            raise UnsupportedVideoError(f"The file is a {container.format.long_name} container. Expected {ACCEPTED}.")
        if shown == "MP4" and container.metadata.get("major_brand") == QUICKTIME_BRAND:
            shown = "MOV"
        if not container.streams.video:
            raise VideoError(f"The {shown} file has no video stream (only {len(container.streams)} other streams). "
                             "Expected a video.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise VideoError(f"The {shown} file's video stream has no frame size. The file is corrupt or truncated.")
        if width * height > self.settings.max_pixels:
            raise VideoError(f"Video frames are {width}×{height} pixels. Expected at most "
                             f"{self.settings.max_pixels / 1e6:.1f} megapixels.")
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = (container.duration or 0) / 1e6
        limit = self.settings.video_max_duration_s
        if duration > limit:
            raise VideoError(f"The video is {duration:.1f} s long. Expected at most {limit:g} s.")
        return VideoInfo(shown, stream.codec_context.name, width, height, fps, duration, int(stream.frames or 0),
                         len(self.data), hashlib.sha256(self.data).hexdigest())

    def frames(self, every: int = 1) -> Iterator[VideoFrame]:
        """Every ``every``-th frame (the first, then each ``every`` later), in order. A stream that breaks,
        stops short of the frames its header declares, or runs past the duration limit raises ``VideoError``."""
        import av

        if every < 1:
            raise VideoError(f"every={every}. Expected a whole number of 1 or more.")
        info, limit = self.info, self.settings.video_max_duration_s
        index = -1
        try:
            for frame in self._container.decode(video=0):
                index += 1
                time_s = float(frame.time) if frame.time is not None else index / info.fps
                if time_s > limit:
                    raise VideoError(f"The video runs past {limit:g} s (frame {index} is at {time_s:.1f} s). "
                                     f"Expected at most {limit:g} s.")
                if index % every == 0:
                    yield VideoFrame(index, round(time_s, 4), frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as exc:
            raise VideoError(f"The {info.format} file is corrupt or truncated after frame {index} "
                             f"({_ffmpeg_reason(exc)}).") from None
        decoded = index + 1
        if decoded == 0:
            raise VideoError(f"No frame of the {info.format} file could be decoded: it is corrupt or truncated.")
        # A cut-off file often decodes cleanly up to the cut: the declared count tells (one frame of slack).
        if info.frame_count and decoded + 1 < info.frame_count:
            raise VideoError(f"The {info.format} file is truncated: it ends after frame {decoded} of the "
                             f"{info.frame_count} its header declares.")

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_video(source: bytes | Path, settings: Settings) -> Video:
    """A checked ``Video`` from bytes (an upload) or a path."""
    data = source if isinstance(source, bytes | bytearray) else read_video_file(source, settings.video_max_bytes)
    return Video(bytes(data), settings)

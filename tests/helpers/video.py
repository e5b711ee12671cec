"""Short real clips made at test time from ../shared/videos/bikes.mp4: every container, a .y4m for Chromium."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.settings import shared_dir

# container suffix -> (PyAV format, codec): one clip per accepted format
CONTAINERS = {".mp4": ("mp4", "libx264"), ".mov": ("mov", "libx264"), ".avi": ("avi", "mpeg4"),
              ".webm": ("webm", "libvpx")}


def bikes_path() -> Path:
    path = shared_dir() / "videos" / "bikes.mp4"
    if not path.is_file():
        pytest.skip("bikes.mp4 not found (expected ../shared/videos)")
    return path


def bikes_frames(count: int, size: tuple[int, int] | None = None, step: int = 1) -> list[np.ndarray]:
    """The first ``count`` frames of bikes.mp4 (each ``step``-th), RGB, optionally resized to (width, height)."""
    import av
    import cv2

    frames = []
    with av.open(str(bikes_path())) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % step:
                continue
            pixels = frame.to_ndarray(format="rgb24")
            frames.append(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA) if size else pixels)
            if len(frames) == count:
                break
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 25, **options) -> Path:
    """``frames`` encoded in the container ``path``'s suffix names (see ``CONTAINERS``)."""
    import av

    fmt, codec = CONTAINERS[path.suffix]
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w", format=fmt, options=options) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """A raw YUV4MPEG2 file (what Chromium's fake camera reads), 4:2:0."""
    import cv2

    height, width = frames[0].shape[:2]
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for pixels in frames:
            handle.write(b"FRAME\n")
            handle.write(cv2.cvtColor(pixels, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path

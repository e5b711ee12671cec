"""The annotated video, encoded as H.264 MP4 into a temp file beside the target and renamed when complete."""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from imgrec.core.errors import ImgrecError


class AnnotatedVideoWriter:
    """``write(pixels)`` per frame; leaving a ``with`` block commits (renames the finished file to ``path``),
    leaving it by an exception aborts (removes the temp file): no half-written video is ever left at ``path``."""

    def __init__(self, path: Path, fps: float, width: int, height: int):
        import av

        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise ImgrecError(f"Output '{self.path.name}' does not end in .mp4. Expected an .mp4 file name.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part.mp4")
        os.close(fd)
        self._temp = Path(temp)
        # H.264 with 4:2:0 chroma wants even sides; the last odd row or column is dropped.
        self.width, self.height = width - width % 2, height - height % 2
        self._container = av.open(str(self._temp), mode="w", format="mp4")
        rate = Fraction(fps).limit_denominator(1001)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"
        self._stream.options = {"preset": "ultrafast", "crf": "26"}
        self.frames = 0

    def write(self, pixels: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels[: self.height, : self.width]), format="rgb24")
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def commit(self) -> Path:
        self._container.mux(self._stream.encode(None))
        self._container.close()
        os.chmod(self._temp, 0o644)
        os.replace(self._temp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._container.close()
        finally:
            self._temp.unlink(missing_ok=True)

    def __enter__(self) -> AnnotatedVideoWriter:
        return self

    def __exit__(self, kind, exc, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()

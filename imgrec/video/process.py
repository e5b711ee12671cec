"""A video through a model (every Nth frame predicted, drawn, written, logged, tabulated): the path of every face."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgrec.core.errors import ImgrecError
from imgrec.core.files import write_atomically
from imgrec.core.images import DecodedImage
from imgrec.inference.predictor import Predictor
from imgrec.inference.service import Outcome, PredictionLog, Upload, log_outcomes
from imgrec.predlog.sources import VIDEO_SOURCE, frame_metadata
from imgrec.predlog.tabular import FORMATS
from imgrec.tasks.base import DecodeOptions
from imgrec.tasks.registry import task_for
from imgrec.video.annotate import annotate
from imgrec.video.decode import Video, VideoFrame
from imgrec.video.writer import AnnotatedVideoWriter

# Frames predicted together: batching pays on 2 cores, and a page's progress bar still moves often.
FRAME_BATCH = 8
TABLE_COLUMNS = ["frame", "time_s", "rank", "label", "score", "x1", "y1", "x2", "y2", "latency_ms"]


@dataclass
class ProcessedFrame:
    index: int
    time_s: float
    result: Any  # the task's result object
    card: Any
    prediction_id: int | None = None
    log_warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        """One NDJSON line of the API and of ``imgrec video --json``."""
        body = {"frame": self.index, "time_s": self.time_s, **task_for(self.card).to_json(self.result),
                "latency_ms": round(self.result.latency_ms, 3)}
        if self.prediction_id is not None:
            body["prediction_id"] = self.prediction_id
        if self.log_warning:
            body["log_warning"] = self.log_warning
        return body


def predict_frames(predictor: Predictor, frames: Iterable[VideoFrame], options: DecodeOptions,
                   batch_size: int = FRAME_BATCH) -> Iterator[tuple[VideoFrame, Any]]:
    """(frame, task result) for each frame, predicted ``batch_size`` at a time."""
    frames = iter(frames)
    while batch := list(itertools.islice(frames, batch_size)):
        yield from zip(batch, predictor.predict([frame.pixels for frame in batch], options), strict=True)


def process_video(predictor: Predictor, video: Video, options: DecodeOptions, *, every: int = 1,
                  output: Path | None = None, prediction_log: PredictionLog | None = None,
                  filename: str = "video", settings=None) -> Iterator[ProcessedFrame]:
    """Every ``every``-th frame's result, in order. ``output``: the annotated MP4, renamed into place only
    once the last frame is in (a broken video leaves nothing there). Every ``settings.video_log_every``-th
    processed frame goes to ``prediction_log`` with source ``video`` and its frame index and time."""
    settings = settings or video.settings
    card = predictor.card
    writer = None
    if output is not None:
        info = video.info
        writer = AnnotatedVideoWriter(output, info.fps / every, info.width, info.height)
    try:
        for processed, (frame, result) in enumerate(predict_frames(predictor, video.frames(every), options)):
            item = ProcessedFrame(frame.index, frame.time_s, result, card)
            if writer is not None:
                writer.write(annotate(frame.pixels, result, card))
            if prediction_log is not None and settings.video_log_every and processed % settings.video_log_every == 0:
                item.prediction_id, item.log_warning = log_frame(prediction_log, video, frame, result, card,
                                                                 filename, settings)
            yield item
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.commit()


def log_frame(prediction_log: PredictionLog, video: Video, frame: VideoFrame, result, card, filename: str,
              settings) -> tuple[int | None, str | None]:
    """One frame in the log: the video is the upload (its hash, size and format), the frame its metadata."""
    info = video.info
    image = DecodedImage(pixels=frame.pixels, format=info.format, width=info.width, height=info.height,
                         original_mode="RGB", byte_size=info.byte_size, sha256=info.sha256)
    outcome = Outcome(Upload(filename, video.data), card, image=image, result=result)
    log_outcomes(prediction_log, [outcome], source=VIDEO_SOURCE, settings=settings,
                 metadata=frame_metadata(frame.index, frame.time_s, info.fps))
    return outcome.prediction_id, outcome.log_warning


def results_table(frames: Iterable[ProcessedFrame]):
    """One row per label (or box) per processed frame, best first; a frame with nothing found keeps one row."""
    import pandas as pd

    rows = []
    for item in frames:
        task = task_for(item.card)
        boxes = task.log_boxes(item.result)
        ranked = boxes if boxes is not None else [(label, score) for label, score in task.log_labels(item.result)]
        base = {"frame": item.index, "time_s": item.time_s, "latency_ms": item.result.latency_ms}
        if not ranked:
            rows.append({**base, "rank": None, "label": None, "score": None})
        for rank, (label, score, *box) in enumerate(ranked, start=1):
            rows.append({**base, "rank": rank, "label": label, "score": float(score),
                         **dict(zip(("x1", "y1", "x2", "y2"), (float(v) for v in box), strict=False))})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS).astype({"rank": "Int64"})


def table_bytes(table, fmt: str) -> bytes:
    """The per-frame table as CSV or Parquet."""
    if fmt not in FORMATS:
        raise ImgrecError(f"Unsupported table format '{fmt}'. Expected one of: {', '.join(FORMATS)}.")
    if fmt == "csv":
        return table.to_csv(index=False).encode()
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_table(table, path: Path) -> Path:
    """The table to ``path`` (its suffix, .csv or .parquet, picks the format), written atomically."""
    path = Path(path)
    write_atomically(path, table_bytes(table, path.suffix.lower().lstrip(".")))
    return path


def timeline(table, top: int = 1):
    """Per processed frame time, how many of each label: a detector's object counts, a classifier's
    top-``top`` labels; columns are labels, the index is ``time_s`` (for a line chart)."""
    kept = table[table["label"].notna()]
    if table["x1"].isna().all():  # labels, not boxes: count only the top ones
        kept = kept[kept["rank"] <= top]
    counts = kept.groupby(["time_s", "label"]).size().unstack(fill_value=0)
    return counts.reindex(sorted(table["time_s"].unique()), fill_value=0)

"""Where a logged prediction came from, and where a video frame's place sits in its metadata (no database imports)."""

SOURCES = ("app", "api", "cli", "batch", "video")
BATCH_SOURCE = "batch"
VIDEO_SOURCE = "video"
# A frame's prediction keeps {"video": {"frame": index, "time_s": seconds, "fps": ...}} as its metadata.
FRAME_INDEX, FRAME_TIME = ("video", "frame"), ("video", "time_s")


def frame_metadata(index: int, time_s: float, fps: float) -> dict:
    """The metadata of a video frame's prediction, in the shape ``FRAME_INDEX`` and ``FRAME_TIME`` read."""
    return {FRAME_INDEX[0]: {FRAME_INDEX[1]: index, FRAME_TIME[1]: time_s, "fps": round(fps, 3)}}

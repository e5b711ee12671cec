"""Live frames (a webcam over WebRTC): the frame callback that predicts and draws, its rates, the ICE servers."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from imgrec.core.errors import SettingsError
from imgrec.inference.predictor import Predictor
from imgrec.tasks.base import DecodeOptions
from imgrec.video.annotate import annotate

RATE_WINDOW = 30  # frames the fps and latency figures are averaged over


def ice_servers(settings) -> list[dict]:
    """``settings.webrtc_ice_servers`` as RTCIceServer objects (``[]`` when empty), or a SettingsError naming it."""
    raw = settings.webrtc_ice_servers.strip()
    if not raw:
        return []
    expected = ('Expected a JSON list of objects with "urls" (and for TURN "username" and "credential"), '
                'e.g. [{"urls": ["stun:stun.example.org:3478"]}].')
    try:
        servers = json.loads(raw)
    except ValueError:
        raise SettingsError(f"IMGREC_WEBRTC_ICE_SERVERS is not valid JSON. {expected}") from None
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise SettingsError(f"IMGREC_WEBRTC_ICE_SERVERS is {type(servers).__name__} {raw[:80]!r}. {expected}")
    return servers


@dataclass(frozen=True)
class LiveStats:
    fps: float  # frames answered per second, over the last RATE_WINDOW frames
    latency_ms: float  # the model's mean inference time per frame over the same frames
    frames: int
    summary: str  # the last frame's result on one line


class LiveAnnotator:
    """The WebRTC frame callback's work, on an RGB array: predict, draw, measure. Thread-safe: the
    callback runs in streamlit-webrtc's worker thread while the page reads ``stats()``.

    ``overlay``: called every ``overlay_every``-th frame with (pixels, result) and returning pixels to
    draw on instead (the page's Grad-CAM); the last overlay is reused in between, so it costs less.
    """

    def __init__(self, predictor: Predictor, options: DecodeOptions,
                 overlay: Callable[[np.ndarray, object], np.ndarray] | None = None, overlay_every: int = 10):
        self.predictor, self.options = predictor, options
        self.overlay, self.overlay_every = overlay, max(1, overlay_every)
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=RATE_WINDOW)
        self._latencies: deque[float] = deque(maxlen=RATE_WINDOW)
        self._frames = 0
        self._summary = ""
        self._last_overlay: np.ndarray | None = None

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        result = self.predictor.predict([pixels], self.options)[0]
        base = pixels
        if self.overlay is not None:
            if self._frames % self.overlay_every == 0 or self._last_overlay is None \
                    or self._last_overlay.shape != pixels.shape:
                self._last_overlay = self.overlay(pixels, result)
            base = self._last_overlay
        drawn = annotate(base, result, self.predictor.card)
        with self._lock:
            self._frames += 1
            self._times.append(time.perf_counter())
            self._latencies.append(result.latency_ms)
            self._summary = self.predictor.task.summary(result)
        return drawn

    def stats(self) -> LiveStats:
        with self._lock:
            times, latencies = list(self._times), list(self._latencies)
            fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            return LiveStats(fps, float(np.mean(latencies)) if latencies else 0.0, self._frames, self._summary)

    def video_frame_callback(self, frame):
        """streamlit-webrtc's ``video_frame_callback``: an ``av.VideoFrame`` in, the annotated one out."""
        import av

        drawn = self(frame.to_ndarray(format="rgb24"))
        annotated = av.VideoFrame.from_ndarray(drawn, format="rgb24")
        annotated.pts, annotated.time_base = frame.pts, frame.time_base
        return annotated

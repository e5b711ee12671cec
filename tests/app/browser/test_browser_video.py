"""The live webcam in Chromium: its fake camera plays a .y4m made from bikes.mp4, the app's frame callback
draws the tiny model's labels on every frame over WebRTC, and the page shows a frame rate above zero."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from imgrec.core.drawing import class_colour
from imgrec.registry import catalog
from tests.helpers.browser import browser_page, screenshot, streamlit_server
from tests.helpers.models import TINY_CLASSES
from tests.helpers.settings import make_settings, own_models_dir
from tests.helpers.video import bikes_frames, write_y4m

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Draws the <video>'s current frame to a canvas: the picture the person sees, as PNG.
GRAB_FRAME = """video => {
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  return canvas.toDataURL('image/png');
}"""


def test_the_fake_camera_comes_back_annotated_with_a_frame_rate(tmp_path, tiny_settings):
    settings = make_settings(tmp_path, models_dir=own_models_dir(tiny_settings, tmp_path))
    catalog.set_active_model("tiny-cnn", "1", settings)
    camera = write_y4m(tmp_path / "bikes.y4m", bikes_frames(20, (320, 240), step=5))
    fake_camera = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                   f"--use-file-for-fake-video-capture={camera}")
    with streamlit_server(settings) as url, browser_page(extra_args=fake_camera) as page:
        page.goto(url)
        page.get_by_role("link", name="Video").click()
        page.get_by_text("Use the webcam").click()
        webrtc = page.frame_locator("iframe[title*='webrtc']")
        webrtc.get_by_role("button", name="Start").click()
        video = webrtc.locator("video")
        video.wait_for()
        rate = page.locator("[data-testid='stMetric']").filter(has_text="Frames per second")
        rate.wait_for(timeout=120_000)
        for _ in range(60):  # the first frames need the model's first call
            fps = float(rate.locator("[data-testid='stMetricValue']").inner_text())
            if fps > 0:
                break
            page.wait_for_timeout(1000)
        assert fps > 0
        video.evaluate("v => new Promise(done => v.readyState >= 2 ? done() : v.addEventListener('loadeddata', done))")
        # The first frames back may still be the camera's own (the model's first call is slow): wait for a drawn one.
        for _ in range(30):
            distances, size = tag_distances(video.evaluate(GRAB_FRAME))
            if min(distances) < 50:
                break
            page.wait_for_timeout(500)
        screenshot(page, "video-live")
    assert size == (320, 240)
    assert min(distances) < 50, distances


def tag_distances(data_url: str) -> tuple[list[float], tuple[int, int]]:
    """How far the top-left label tag's plain fill (see ``imgrec.video.annotate.draw_labels``) is from each
    tiny class's colour, and the frame's (width, height)."""
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB")).astype(int)
    height, width = pixels.shape[:2]
    pad = max(2, round(min(width, height) / 100))
    fill = np.median(pixels[pad + 1 : 2 * pad, pad + 1 : 3 * pad].reshape(-1, 3), axis=0)
    return [float(np.abs(fill - class_colour(index)).max()) for index in range(len(TINY_CLASSES))], (width, height)

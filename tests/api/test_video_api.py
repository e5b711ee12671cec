"""``POST /predict/video`` (streamed NDJSON) and the WebSocket ``/ws/predict`` of a real API process, with
the shipped XL detector on bikes.mp4 and a tiny classifier; hostile videos answered 415/422, never 500."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest
from websockets.sync.client import connect

from imgrec.registry import catalog
from imgrec.registry.detector_cards import DEFAULT_DETECTOR
from tests.helpers.api import Server
from tests.helpers.hostile_inputs import small_jpeg
from tests.helpers.models import build_tiny_model, tiny_card
from tests.helpers.settings import make_settings
from tests.helpers.video import bikes_frames, bikes_path, write_clip


@pytest.fixture(scope="module")
def video_settings(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("video-api"), default_model="tiny-cnn")
    if not settings.shared_detection_dir.is_dir():
        pytest.skip("shipped detectors not found (expected ../shared/detection)")
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    catalog.ensure_stock_detector(DEFAULT_DETECTOR, settings)
    return settings


@pytest.fixture(scope="module")
def server(video_settings):
    server = Server(video_settings, "video", IMGREC_API_MODEL_LOAD_WAIT_S="120")
    server.start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http


def lines(response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def test_the_detector_streams_people_and_cars_in_bikes(client):
    response = client.post("/predict/video", params={"model": DEFAULT_DETECTOR, "every": 50, "score_threshold": 0.3},
                           files={"file": ("bikes.mp4", bikes_path().read_bytes(), "video/mp4")})
    frames = lines(response)
    assert [line["frame"] for line in frames] == [0, 50, 100, 150, 200]
    assert [line["time_s"] for line in frames] == [0.0, 2.0, 4.0, 6.0, 8.0]
    found = Counter(d["label"] for line in frames for d in line["detections"])
    assert found["person"] >= 1 and found["car"] >= 1, found
    assert frames[0]["image"] == {"width": 640, "height": 272} and frames[0]["prediction_id"] is not None


def test_a_classifier_labels_each_frame(client, tmp_path):
    clip = write_clip(tmp_path / "clip.webm", bikes_frames(4, (96, 40)))
    frames = lines(client.post("/predict/video", params={"top_k": 2},
                               files={"file": ("clip.webm", clip.read_bytes())}))
    assert [line["frame"] for line in frames] == [0, 1, 2, 3]
    assert all([p["label"] in {"cat", "dog", "bird"} for p in line["predictions"]] and len(line["predictions"]) == 2
               for line in frames)


def test_hostile_videos_are_415_or_422(client, tmp_path, photos_dir):
    clip = write_clip(tmp_path / "clip.mp4", bikes_frames(4, (64, 28))).read_bytes()
    cases = [(b"", 422, "invalid_video"), (b"plain text, not a video", 415, "unsupported_format"),
             ((photos_dir / "cat.jpg").read_bytes(), 415, "unsupported_format"),
             (clip[: len(clip) // 2], 422, "invalid_video")]
    for data, status, error in cases:
        response = client.post("/predict/video", files={"file": ("upload.mp4", data)})
        assert response.status_code == status, response.text
        assert response.json()["error"] == error and "Expected" in response.json()["detail"]
    assert client.post("/predict/video", data={"other": "x"}, files={"x": ("a", b"1")}).json()["error"] == "no_file"
    assert client.post("/predict/video", content=b"raw").status_code == 415
    bad_every = client.post("/predict/video", params={"every": 0}, files={"file": ("c.mp4", clip)})
    assert bad_every.status_code == 422


def test_the_websocket_answers_each_frame(server, photos_dir):
    url = server.url.replace("http", "ws") + f"/ws/predict?model={DEFAULT_DETECTOR}"
    with connect(url, open_timeout=120) as socket:
        socket.send((photos_dir / "grace_hopper.jpg").read_bytes())
        first = json.loads(socket.recv(timeout=120))
        socket.send(b"not an image")
        broken = json.loads(socket.recv(timeout=60))
        socket.send("text")
        text = json.loads(socket.recv(timeout=60))
        socket.send(small_jpeg())
        last = json.loads(socket.recv(timeout=60))
    assert first["frame"] == 0 and Counter(d["label"] for d in first["detections"]) == {"person": 1, "tie": 1}
    assert broken["frame"] == 1 and broken["error"] == "invalid_image" and "Expected" in broken["detail"]
    assert text["frame"] == 2 and "Expected a binary message" in text["detail"]
    assert last["frame"] == 3 and "detections" in last


def test_the_websocket_refuses_an_unknown_model(server):
    with connect(server.url.replace("http", "ws") + "/ws/predict?model=nope", open_timeout=60) as socket:
        answer = json.loads(socket.recv(timeout=60))
    assert answer["error"] == "model_not_found" and "nope" in answer["detail"]

"""``POST /predict`` of a real API process serving the shipped XL detector: boxes in the photo's pixels,
the detection parameters, their 422s, another detector by ``?model=``, and the boxes in the log."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from imgrec.predlog.store import detections_table, open_store
from imgrec.registry.detector_cards import DEFAULT_DETECTOR
from tests.helpers.api import Server
from tests.helpers.settings import make_settings


@pytest.fixture(scope="module")
def detect_settings(detector_settings, tmp_path_factory):
    """The registered detectors, with the XL one as the default model (the user's choice)."""
    return make_settings(tmp_path_factory.mktemp("detect-api"), models_dir=detector_settings.models_dir,
                         default_model=DEFAULT_DETECTOR)


@pytest.fixture(scope="module")
def client(detect_settings):
    server = Server(detect_settings, "detect")
    server.start()
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            yield http
    finally:
        server.stop()


def post(client, photos_dir, name, **params):
    return client.post("/predict", params=params, files={"files": (name, (photos_dir / name).read_bytes())})


def test_boxes_in_the_photos_pixels_and_logged(client, photos_dir, detect_settings):
    response = post(client, photos_dir, "grace_hopper.jpg")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": DEFAULT_DETECTOR, "version": "1", "task": "detection"}
    assert body["image"] == {"width": 512, "height": 600}
    assert Counter(d["label"] for d in body["detections"]) == {"person": 1, "tie": 1}
    for detection in body["detections"]:
        x1, y1, x2, y2 = detection["box"]
        assert 0 <= x1 < x2 <= 512 and 0 <= y1 < y2 <= 600 and 0.3 <= detection["score"] <= 1
    with open_store(detect_settings) as store, store.engine.connect() as connection:
        logged = connection.execute(sa.select(detections_table.c["label", "score"]).where(
            detections_table.c.prediction_id == body["prediction_id"]).order_by(detections_table.c.rank)).all()
    assert [(label, round(score, 6)) for label, score in logged] == [
        (d["label"], d["score"]) for d in body["detections"]]


def test_parameters_filter_the_boxes(client, photos_dir):
    body = post(client, photos_dir, "grace_hopper.jpg", classes="tie").json()
    assert [d["label"] for d in body["detections"]] == ["tie"]
    body = post(client, photos_dir, "grace_hopper.jpg", score_threshold=0.9).json()
    assert [d["label"] for d in body["detections"]] == ["person"]
    body = post(client, photos_dir, "grace_hopper.jpg", max_detections=1).json()
    assert len(body["detections"]) == 1
    repeated = client.post("/predict?classes=tie&classes=person",
                           files={"files": ("g.jpg", (photos_dir / "grace_hopper.jpg").read_bytes())}).json()
    assert {d["label"] for d in repeated["detections"]} == {"person", "tie"}


def test_nothing_over_the_threshold_is_an_empty_list(client, photos_dir):
    body = post(client, photos_dir, "grace_hopper.jpg", classes="giraffe").json()
    assert body["detections"] == [] and body["image"] == {"width": 512, "height": 600}


@pytest.mark.parametrize("params, words", [
    ({"score_threshold": 2}, "score_threshold=2.0. Expected a number in (0, 1]"),
    ({"iou_threshold": "nan"}, "iou_threshold=nan. Expected a number in (0, 1]"),
    ({"max_detections": 0}, "max_detections=0. Expected an integer from 1 to 1000"),
    ({"classes": "tvmonitor"}, "classes: 'tvmonitor' is not among the 80 classes of coco-yolo-fastest-xl@1"),
    ({"classes": ","}, "classes is empty"),
])
def test_bad_parameters_are_422_naming_what_was_received(client, photos_dir, params, words):
    response = post(client, photos_dir, "parrot.jpg", **params)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_parameter" and words in response.json()["detail"]


def test_the_regular_detector_by_model_parameter(client, photos_dir):
    deadline = time.monotonic() + 120
    while (response := post(client, photos_dir, "pets.jpg", model="coco-yolo-fastest")).status_code == 503:
        assert response.json()["error"] == "model_loading" and time.monotonic() < deadline, response.text
        time.sleep(1)  # the load goes on in the background; the API said so instead of waiting
    body = response.json()
    assert body["model"]["name"] == "coco-yolo-fastest"
    assert Counter(d["label"] for d in body["detections"])["dog"] == 2

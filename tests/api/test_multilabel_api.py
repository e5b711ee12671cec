"""A trained tiny multi-label model through a real API process: every label with score, threshold and present,
an unlike (all-black) image, and the label set kept in the prediction log."""

from __future__ import annotations

import httpx
import pytest

from imgrec.registry import catalog
from tests.helpers.api import Server
from tests.helpers.multilabel_data import COLOURS, png_bytes, quadrant_image, train_tiny_multilabel, write_colour_csv
from tests.helpers.settings import make_settings


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("multilabel-api")
    settings = make_settings(root)
    run = train_tiny_multilabel(settings, str(write_colour_csv(root / "csv", images=60)), dataset_format="csv",
                                epochs=6, image_size=24)
    assert run.status()["state"] == "completed", run.status().get("error")
    catalog.set_active_model("tiny-multilabel", "1", settings)
    server = Server(settings, "multilabel")
    server.start()
    try:
        server.wait_ready()
        yield settings, server
    finally:
        server.stop()


def test_predict_answers_every_label_with_its_threshold_and_logs_the_set(served):
    from imgrec.predlog.store import open_store

    settings, server = served
    _, card = catalog.load_model("tiny-multilabel", "1", settings)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post("/predict", files={"files": ("two.png", png_bytes(quadrant_image("red", "blue")))})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "tiny-multilabel", "version": "1", "task": "multi-label-classification"}
    labels = body["labels"]
    assert {item["label"] for item in labels} == set(COLOURS) and "predictions" not in body
    assert all(set(item) == {"label", "score", "threshold", "present"} for item in labels)
    thresholds = dict(zip(card.class_names, card.decoding["thresholds"]))
    for item in labels:
        assert item["threshold"] == pytest.approx(thresholds[item["label"]], abs=1e-6)
        assert item["present"] == (item["score"] >= thresholds[item["label"]])
    present = [item for item in labels if item["present"]]
    assert labels[: len(present)] == present  # the labels found come first
    with open_store(settings) as store:
        row = store.get_prediction(body["prediction_id"])
    assert [item["label"] for item in row["label_set"]] == [item["label"] for item in present]
    assert row["top1_label"] == max(labels, key=lambda item: item["score"])["label"]


def test_an_unlike_image_gives_its_possibly_empty_set_logged_the_same(served):
    from imgrec.predlog.store import open_store

    settings, server = served
    black = quadrant_image("red", "red") * 0
    with httpx.Client(base_url=server.url, timeout=60) as client:
        body = client.post("/predict", files={"files": ("black.png", png_bytes(black))}).json()
    found = [item for item in body["labels"] if item["present"]]
    with open_store(settings) as store:
        assert len(store.get_prediction(body["prediction_id"])["label_set"]) == len(found)

"""The latency logged for each image of a multi-image upload is that image's share, not the batch's."""

from __future__ import annotations

import time

import pytest

from imgrec.inference.service import PredictionLog, Upload, serve_uploads
from imgrec.predlog import stats
from imgrec.predlog.store import open_store
from imgrec.tasks.base import DecodeOptions
from tests.helpers.settings import make_settings


def test_each_logged_latency_is_a_per_image_share_of_the_batch(tiny_settings, tiny_predictor, photos_dir, tmp_path):
    settings = make_settings(tmp_path, models_dir=tiny_settings.models_dir)
    names = ["cat.jpg", "dog_test_0.jpg", "bird.jpg", "owl.jpg", "parrot.jpg", "sunflower.jpg", "face.jpg", "pets.jpg"]
    uploads = [Upload(name, (photos_dir / name).read_bytes()) for name in names]
    log = PredictionLog(settings, serving=False)
    started = time.perf_counter()
    outcomes = serve_uploads(tiny_predictor, uploads, DecodeOptions(), settings, log, source="cli")
    wall_ms = (time.perf_counter() - started) * 1000
    log.close()
    assert all(outcome.ok for outcome in outcomes)
    with open_store(settings) as store:
        logged = stats.export_rows(store)["latency_ms"].tolist()
    assert logged == pytest.approx([outcome.result.latency_ms for outcome in outcomes])
    # One batch: every image carries the same share, and together they are no more than the call took.
    assert len(set(logged)) == 1 and sum(logged) <= wall_ms

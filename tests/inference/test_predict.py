"""The predictor against plain Keras: same answers, batched, thread-safe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import pytest

from imgrec.core.images import decode_image
from imgrec.inference.predictor import Predictor
from imgrec.inference.runtimes import MAX_BATCH
from imgrec.tasks.base import DecodeOptions

CLEAR_PHOTOS = {
    "cat.jpg": {"Egyptian cat", "tabby", "tiger cat"},
    "parrot.jpg": {"macaw"},
    "bird.jpg": {"chickadee"},
    "hot_dog.jpg": {"hotdog"},
    "dragonfly.jpg": {"dragonfly"},
    "sunflower.jpg": {"daisy"},  # ImageNet has no sunflower class; daisy is its nearest
}


@pytest.fixture(scope="module")
def photos(photos_dir):
    return {name: decode_image(photos_dir / name) for name in CLEAR_PHOTOS}


def test_names_the_right_object_on_clear_photos(imagenet_predictor, photos):
    results = imagenet_predictor.predict(list(photos.values()), DecodeOptions(top_k=5))
    for (name, expected), result in zip(CLEAR_PHOTOS.items(), results):
        predictions = result.predictions
        assert predictions[0].label in expected, (name, predictions[:3])
        assert len(predictions) == 5
        scores = [p.score for p in predictions]
        assert scores == sorted(scores, reverse=True)


def test_same_top_k_as_plain_keras_with_its_own_preprocessing(imagenet_predictor, photos):
    # Independent path: the stock Keras model and keras.applications' preprocess_input.
    batch = imagenet_predictor.prepare(list(photos.values()))
    stock = keras.applications.MobileNetV2(weights="imagenet")
    expected = stock.predict(keras.applications.mobilenet_v2.preprocess_input(batch.astype("float32")), verbose=0)
    ours = imagenet_predictor.predict_batch(batch)
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    for row_ours, row_expected in zip(ours, expected):
        assert list(np.argsort(-row_ours)[:5]) == list(np.argsort(-row_expected)[:5])


def test_batched_equals_one_by_one(tiny_predictor, rng):
    images = [rng.integers(0, 256, (rng.integers(10, 80), rng.integers(10, 80), 3)).astype(np.uint8) for _ in range(5)]
    together = tiny_predictor.predict_outputs(images)
    alone = np.concatenate([tiny_predictor.predict_outputs([image]) for image in images])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_more_than_one_chunk(tiny_predictor, rng):
    images = [rng.integers(0, 256, (32, 32, 3)).astype(np.uint8) for _ in range(MAX_BATCH + 3)]
    probabilities = tiny_predictor.predict_outputs(images)
    assert probabilities.shape == (MAX_BATCH + 3, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_thread_safety_results_identical_to_serial(tiny_predictor, rng):
    images = [rng.integers(0, 256, (40, 40, 3)).astype(np.uint8) for _ in range(48)]
    serial = [tiny_predictor.predict([image], DecodeOptions(top_k=3)) for image in images]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda image: tiny_predictor.predict([image], DecodeOptions(top_k=3)), images))
    for a, b in zip(serial, threaded):
        assert [p.label for p in a[0].predictions] == [p.label for p in b[0].predictions]
        np.testing.assert_allclose([p.score for p in a[0].predictions], [p.score for p in b[0].predictions], atol=1e-6)


def test_top_k_is_clamped_and_details_carry_latency(tiny_predictor, rng):
    image = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert len(tiny_predictor.predict([image], DecodeOptions(top_k=10))[0].predictions) == 3
    assert len(tiny_predictor.predict([image], DecodeOptions(top_k=0))[0].predictions) == 1
    [detail] = tiny_predictor.predict([image], DecodeOptions(top_k=2))
    assert detail.latency_ms > 0 and detail.probabilities.shape == (3,)
    assert tiny_predictor.predict([], DecodeOptions(top_k=3)) == []


def test_loading_traces_once_and_no_batch_size_traces_again(tiny_settings, rng):
    # The first user must not pay for tracing: the constructor's warm-up traces the one function,
    # and calls of any batch size after it reuse that trace.
    predictor = Predictor.load("tiny-cnn", "1", tiny_settings)
    assert predictor._infer.experimental_get_tracing_count() == 1
    for size in (1, 3, MAX_BATCH + 1):
        predictor.predict_outputs([rng.integers(0, 256, (32, 32, 3)).astype(np.uint8) for _ in range(size)])
    assert predictor._infer.experimental_get_tracing_count() == 1

"""The shipped detectors through the Predictor on real photos: the right objects, boxes in original pixels."""

from __future__ import annotations

from collections import Counter

import pytest

from imgrec.core.images import decode_image
from imgrec.inference.predictor import Predictor
from imgrec.registry import catalog
from imgrec.tasks.base import DecodeOptions

EXPECTED = {"parrot.jpg": {"bird": 1}, "grace_hopper.jpg": {"person": 1, "tie": 1}, "pets.jpg": {"dog": 2}}


@pytest.fixture(scope="module")
def photos(photos_dir):
    return {name: decode_image(photos_dir / name) for name in EXPECTED}


def test_xl_finds_the_objects_of_real_photos(detector_predictor, photos):
    results = detector_predictor.predict(list(photos.values()))
    for (name, expected), image, result in zip(EXPECTED.items(), photos.values(), results, strict=True):
        assert Counter(d.label for d in result.detections) == Counter(expected), (name, result.detections)
        assert (result.width, result.height) == (image.width, image.height)
        for detection in result.detections:
            x1, y1, x2, y2 = detection.box
            assert 0 <= x1 < x2 <= image.width and 0 <= y1 < y2 <= image.height
            assert detection.score >= 0.3
        scores = [d.score for d in result.detections]
        assert scores == sorted(scores, reverse=True)


def test_bird_box_covers_the_parrot_in_original_pixels(detector_predictor, photos):
    [result] = detector_predictor.predict([photos["parrot.jpg"]])
    [bird] = result.detections
    x1, y1, x2, y2 = bird.box
    # The parrot fills most of the tall photo (512x929): the box must span it in its own pixels, not 320x320.
    assert bird.score > 0.9 and (x2 - x1) > 250 and (y2 - y1) > 600


def test_options_filter_classes_and_thresholds(detector_predictor, photos):
    [only_ties] = detector_predictor.predict([photos["grace_hopper.jpg"]], DecodeOptions(classes=("tie",)))
    assert [d.label for d in only_ties.detections] == ["tie"]
    [strict] = detector_predictor.predict([photos["grace_hopper.jpg"]], DecodeOptions(score_threshold=0.9))
    assert [d.label for d in strict.detections] == ["person"]


def test_stock_detectors_registered_without_changing_the_active_model(detector_settings):
    card = catalog.load_card("coco-yolo-fastest-xl", None, detector_settings)
    assert card.task == "detection" and card.input_size == (320, 320) and "tv" in card.class_names
    assert card.licence and "96a2900d" in card.source
    assert catalog.active_model(detector_settings)[0] == detector_settings.default_model


def test_regular_detector_is_weaker_but_finds_the_dogs(detector_settings, photos):
    predictor = Predictor.load("coco-yolo-fastest", None, detector_settings)
    [pets] = predictor.predict([photos["pets.jpg"]])
    assert Counter(d.label for d in pets.detections)["dog"] == 2

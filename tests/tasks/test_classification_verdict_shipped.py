"""The verdict with the shipped CIFAR-10 model on real photos: a cat is a cat, Grace Hopper is not a class."""

from __future__ import annotations

import pytest

from imgrec.core.images import decode_image
from imgrec.core.settings import PROJECT_ROOT
from imgrec.inference.predictor import Predictor
from tests.helpers.settings import make_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("shipped"), models_dir=PROJECT_ROOT / "models")
    return Predictor.load("cifar10-mobilenetv2", "1", settings, backend="keras")


def verdict_of(predictor, path):
    [result] = predictor.predict([decode_image(path.read_bytes())])
    return result, predictor.task.verdict(result, 0.5)


def test_in_distribution_photo_is_confident(cifar10, photos_dir):
    result, verdict = verdict_of(cifar10, photos_dir / "cat.jpg")
    assert (result.top.label, verdict.kind, verdict.out_of_distribution) == ("cat", "confident", False)
    # The card's temperature (below 1: the model is underconfident) is applied, not the raw score.
    assert result.temperature == cifar10.card.metrics["temperature"]
    assert verdict.figures["calibrated"] > result.top.score


def test_a_person_is_outside_the_models_classes(cifar10, photos_dir):
    result, verdict = verdict_of(cifar10, photos_dir / "grace_hopper.jpg")
    assert result.top.label == "cat" and result.top.score > 0.5  # the confident nonsense of issue 20
    assert verdict.kind == "uncertain" and verdict.out_of_distribution
    assert "Outside this model's classes?" in verdict.text

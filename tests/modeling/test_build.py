"""Model building: in-model preprocessing, every backbone, ImageNet weights at any input size, clear refusals."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from imgrec.core.errors import ModelError
from imgrec.modeling.backbones import BACKBONES
from imgrec.modeling.build import Preprocess, build_model
from imgrec.registry import catalog
from imgrec.registry.card import ModelCard
from tests.helpers.models import CLASSIFICATION


@pytest.mark.parametrize("mode, pixel, expected", [
    ("mobilenet_v2", [0.0, 127.5, 255.0], [-1.0, 0.0, 1.0]),
    ("unit", [0.0, 51.0, 255.0], [0.0, 0.2, 1.0]),
    ("caffe", [10.0, 20.0, 30.0], [30 - 103.939, 20 - 116.779, 10 - 123.68]),
    ("none", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
])
def test_preprocess_modes(mode, pixel, expected):
    out = Preprocess(mode)(np.array([[[pixel]]], np.float32))
    np.testing.assert_allclose(np.asarray(out)[0, 0, 0], expected, rtol=1e-5)


def test_preprocess_matches_keras_applications():
    batch = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        Preprocess("mobilenet_v2")(batch), keras.applications.mobilenet_v2.preprocess_input(batch.copy()), atol=1e-5
    )
    np.testing.assert_allclose(
        Preprocess("caffe")(batch), keras.applications.resnet50.preprocess_input(batch.copy()), atol=1e-4
    )


def test_unknown_backbone_and_preprocessing_are_refused():
    with pytest.raises(ModelError, match="Unknown backbone 'vgg'. Expected one of: mobilenet_v2"):
        build_model("vgg", 3, head=CLASSIFICATION.head)
    with pytest.raises(ModelError, match="Unknown preprocessing"):
        Preprocess("zscore")
    for backbone in ("small_cnn", "mobilenet_v2"):  # whether or not the backbone has pretrained weights
        with pytest.raises(ModelError, match="weights='imagenet21k'. Expected 'imagenet' or None."):
            build_model(backbone, 3, weights="imagenet21k", head=CLASSIFICATION.head)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_every_backbone_builds_saves_and_reloads(backbone, settings, rng):
    model = build_model(backbone, 4, (32, 32), weights=None, head=CLASSIFICATION.head)
    card = ModelCard(
        name=f"t-{backbone}", version="", backbone=backbone, input_size=(32, 32),
        preprocessing=BACKBONES[backbone].preprocessing, class_names=("a", "b", "c", "d"), dataset="none",
    )
    catalog.save_model(model, card, settings)
    reloaded, _ = catalog.load_model(card.name, None, settings)
    batch = rng.integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    np.testing.assert_allclose(reloaded(batch), model(batch), atol=1e-5)
    assert model.output_shape == (None, 4)


def test_mobilenet_imagenet_weights_serve_any_input_size(imagenet_settings):
    # Offline, only 224x224 weights exist; a 96x96 model must reuse them, not download or start random.
    model = build_model("mobilenet_v2", 3, (96, 96), weights="imagenet", head=CLASSIFICATION.head)
    stock = keras.applications.MobileNetV2(include_top=False, weights="imagenet", input_shape=(224, 224, 3))
    backbone = model.get_layer("backbone")
    for ours, theirs in zip(backbone.get_weights(), stock.get_weights()):
        np.testing.assert_array_equal(ours, theirs)

"""Model building: Keras-applications backbones and a small CNN, all taking raw 0-255 RGB.

Preprocessing is a layer inside every model, so the app, the API, exports and
Grad-CAM all feed the same raw pixels and can never disagree about scaling.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable

import keras
from keras import layers, ops

from imgrec.core.errors import ModelError, WeightsFallbackWarning
from imgrec.modeling.backbones import BACKBONES, BackboneSpec

BACKBONE_LAYER_NAME = "backbone"
IMAGENET_INPUT_SIZE = (224, 224)
# The offline ImageNet weights exist at 224x224; convolution weights do not depend on
# the input size, so every other size borrows them (see ``_backbone``).
IMAGENET_WEIGHTS_SIZE = 224


@keras.saving.register_keras_serializable(package="imgrec")
class Preprocess(layers.Layer):
    """Raw 0-255 RGB to what a backbone expects. ``mode`` is recorded in the model card too."""

    MODES = ("mobilenet_v2", "unit", "caffe", "none")
    _CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ModelError(f"Unknown preprocessing '{mode}'. Expected one of: {', '.join(self.MODES)}.")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        if self.mode == "mobilenet_v2":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(self._CAFFE_MEAN_BGR, dtype="float32")
        return x

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def backbone_spec(backbone: str) -> BackboneSpec:
    try:
        return BACKBONES[backbone]
    except KeyError:
        raise ModelError(f"Unknown backbone '{backbone}'. Expected one of: {', '.join(BACKBONES)}.") from None


def build_model(
    backbone: str,
    num_classes: int,
    image_size: tuple[int, int] = (224, 224),
    weights: str | None = "imagenet",
    dropout: float = 0.2,
    *,
    head: Callable,
) -> keras.Model:
    """Preprocess -> backbone (a nested model) -> pooling -> the task's ``head(features, num_classes, dropout)``."""
    spec = backbone_spec(backbone)
    if weights not in (None, "imagenet"):
        raise ModelError(f"weights={weights!r}. Expected 'imagenet' or None.")
    height, width = image_size
    inputs = keras.Input((height, width, 3), name="image")
    x = Preprocess(spec.preprocessing, name="preprocess")(inputs)
    if spec.application is None:
        x = _small_cnn_features(x)
    else:
        x = _backbone(backbone, spec, (height, width), weights)(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, head(x, num_classes, dropout), name=f"{backbone}_model")


def _small_cnn_features(x):
    # Inline (not nested) on purpose: Grad-CAM must handle both flat and nested models.
    for index, filters in enumerate((32, 64, 128)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{index + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{index + 1}")(x)
        x = layers.Activation("relu", name=f"relu{index + 1}")(x)
        if index < 2:
            x = layers.MaxPooling2D(name=f"maxpool{index + 1}")(x)
    return x


def _backbone(name: str, spec: BackboneSpec, size: tuple[int, int], weights: str | None) -> keras.Model:
    constructor = getattr(keras.applications, spec.application)
    model = constructor(include_top=False, weights=None, input_shape=(*size, 3))
    model.name = BACKBONE_LAYER_NAME
    if weights == "imagenet":
        try:
            pretrained = constructor(
                include_top=False, weights="imagenet", input_shape=(IMAGENET_WEIGHTS_SIZE, IMAGENET_WEIGHTS_SIZE, 3)
            )
        except Exception as exc:  # noqa: BLE001 - offline or a failed download: train from scratch, say so
            warnings.warn(WeightsFallbackWarning(
                f"No ImageNet weights for {name} ({type(exc).__name__}: {exc}); the backbone starts from random "
                "initialisation, so expect lower accuracy and slower training."), stacklevel=3)
        else:
            model.set_weights(pretrained.get_weights())
    return model


def build_imagenet_mobilenet_v2() -> tuple[keras.Model, list[str]]:
    """The stock Keras MobileNetV2 with its ImageNet head, wrapped to take raw RGB, and its 1000 labels."""
    height, width = IMAGENET_INPUT_SIZE
    inputs = keras.Input((height, width, 3), name="image")
    x = Preprocess("mobilenet_v2", name="preprocess")(inputs)
    stock = keras.applications.MobileNetV2(weights="imagenet", input_shape=(height, width, 3))
    stock.name = BACKBONE_LAYER_NAME
    outputs = stock(x)
    model = keras.Model(inputs, outputs, name="imagenet_mobilenet_v2")
    return model, imagenet_class_names()


def imagenet_class_names() -> list[str]:
    # Same file and cache location that keras.applications.imagenet_utils uses.
    path = keras.utils.get_file(
        "imagenet_class_index.json",
        "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json",
        cache_subdir="models",
        file_hash="c2c37ea517e94d9795004a39431a14cb",
    )
    with open(path) as handle:
        index = json.load(handle)
    return [index[str(i)][1].replace("_", " ") for i in range(len(index))]

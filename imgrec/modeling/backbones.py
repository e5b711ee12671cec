"""The backbones a model can be built on, by name: a table without Keras, so validating a run config
or drawing the Train form does not load TensorFlow (``imgrec.modeling.build`` builds them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneSpec:
    application: str | None  # the keras.applications constructor, with ImageNet weights; None: the small CNN
    preprocessing: str  # the Preprocess layer mode the backbone expects


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec("MobileNetV2", "mobilenet_v2"),
    "efficientnet_b0": BackboneSpec("EfficientNetB0", "none"),  # rescales inside itself
    "resnet50": BackboneSpec("ResNet50", "caffe"),
    "small_cnn": BackboneSpec(None, "unit"),
}

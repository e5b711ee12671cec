"""Training-time augmentation: which augmentations a run uses, the Keras layers that apply them, a preview."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from imgrec.datasets.loading import DatasetError


@dataclass
class AugmentConfig:
    """Each augmentation is off at strength 0. Strengths follow the Keras layers' ``factor`` arguments."""
    flip: bool = False  # horizontal flip
    rotation: float = 0.0  # fraction of a full turn, e.g. 0.05 = +-18 degrees
    zoom: float = 0.0  # e.g. 0.1 = +-10 %
    brightness: float = 0.0  # e.g. 0.2
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    cutout: float = 0.0  # fraction of the image side erased, e.g. 0.25

    @property
    def enabled(self) -> bool:
        return self.flip or any(getattr(self, f.name) > 0 for f in fields(self) if f.name != "flip")

    @classmethod
    def from_dict(cls, data: dict | None) -> AugmentConfig:
        data = dict(data or {})
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise DatasetError(f"Unknown augmentation(s): {', '.join(sorted(unknown))}. "
                               f"Expected: {', '.join(f.name for f in fields(cls))}.")
        return cls(**data)

    @classmethod
    def standard(cls) -> AugmentConfig:
        return cls(flip=True, rotation=0.03, zoom=0.1, brightness=0.1, contrast=0.1)


def augmentation_layers(config: AugmentConfig, seed: int = 1337):
    """A ``keras.Sequential`` on float 0-255 RGB batches, or ``None`` when every augmentation is off."""
    if not config.enabled:
        return None
    import keras
    from keras import layers

    stack = []
    if config.flip:
        stack.append(layers.RandomFlip("horizontal", seed=seed))
    if config.rotation > 0:
        stack.append(layers.RandomRotation(config.rotation, fill_mode="reflect", seed=seed + 1))
    if config.zoom > 0:
        stack.append(layers.RandomZoom(config.zoom, fill_mode="reflect", seed=seed + 2))
    if config.brightness > 0:
        stack.append(layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed + 3))
    if config.contrast > 0:
        stack.append(layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed + 4))
    if config.saturation > 0:
        stack.append(layers.RandomSaturation(min(config.saturation, 1.0), value_range=(0, 255), seed=seed + 5))
    if config.hue > 0:
        stack.append(layers.RandomHue(min(config.hue, 1.0), value_range=(0, 255), seed=seed + 6))
    if config.cutout > 0:
        stack.append(Cutout(config.cutout, seed=seed + 7))
    return keras.Sequential(stack, name="augmentation")


def _cutout_layer_class():
    import keras
    import tensorflow as tf

    class _Cutout(keras.layers.Layer):
        """Erase one random square (side = ``size`` x image side) per image, filled with mid grey."""
        def __init__(self, size: float, seed: int | None = None, **kwargs):
            super().__init__(**kwargs)
            self.size = float(size)
            self.seed = seed

        def call(self, images, training=True):
            if not training:
                return images
            shape = tf.shape(images)
            n, h, w = shape[0], shape[1], shape[2]
            side_h = tf.cast(tf.cast(h, tf.float32) * self.size, tf.int32)
            side_w = tf.cast(tf.cast(w, tf.float32) * self.size, tf.int32)
            cy = tf.random.uniform((n, 1, 1), 0, h, dtype=tf.int32)
            cx = tf.random.uniform((n, 1, 1), 0, w, dtype=tf.int32)
            ys = tf.range(h)[None, :, None]
            xs = tf.range(w)[None, None, :]
            inside = (tf.abs(ys - cy) <= side_h // 2) & (tf.abs(xs - cx) <= side_w // 2)
            mask = tf.cast(inside, images.dtype)[..., None]
            return images * (1 - mask) + 127.0 * mask

        def get_config(self):
            return {**super().get_config(), "size": self.size, "seed": self.seed}

    return _Cutout


def Cutout(size: float, seed: int | None = None):  # noqa: N802 - reads like the layer it builds
    return _cutout_layer_class()(size, seed=seed, name="cutout")


def preview_augmentations(images: np.ndarray, config: AugmentConfig, copies: int = 4, seed: int = 0) -> np.ndarray:
    """``copies`` augmented versions of each image: (len(images), copies, H, W, 3) uint8 for a preview grid."""
    layer = augmentation_layers(config, seed)
    images = np.asarray(images, np.uint8)
    if layer is None:
        return np.repeat(images[:, None], copies, axis=1)
    batch = np.repeat(images, copies, axis=0).astype(np.float32)
    out = np.asarray(layer(batch, training=True))
    out = np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out.reshape(len(images), copies, *images.shape[1:])

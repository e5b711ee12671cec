"""Grad-CAM and Grad-CAM++ heatmaps: one base class, ``CAM``, with one override point.

The base runs the model to get the feature map of a chosen layer and the gradient of the target
score with respect to it; a subclass only says how to turn those into one weight per channel
(``channel_weights``). The map is ``relu(sum_k weight_k * feature_map_k)``, scaled to [0, 1] and
upsampled bilinearly. Inputs are raw 0-255 RGB, like everywhere in imgrec: preprocessing is inside
the model.

The target is one scalar of the model's output: a class score of a classifier's (batch, classes)
output, or for a detector's decoded (batch, boxes, 4 + classes) output the score of one detection,
``[i, output_index, 4 + class_index]`` (a ``BoxTarget``). Both are one position in the flattened
output row, so one traced function serves either, for a whole batch of images at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from imgrec.core.errors import ImageError, ModelError
from imgrec.core.images import resize
from imgrec.explain.layers import LAYER_SEPARATOR, final_layer, resolve_layer, score_head, tapped_model
from imgrec.tasks.base import BoxTarget, ClassTarget

METHODS = ("gradcam", "gradcam++")


@dataclass(frozen=True, eq=False)
class Heatmap:
    values: np.ndarray  # float32 (height, width) in [0, 1], same height and width as the image given
    target_class: int  # index into the model's outputs
    label: str  # class name when known, else the index as text
    probability: float  # the model's probability for target_class on this image
    layer: str  # qualified name of the layer explained, e.g. "backbone/out_relu"
    method: str  # "gradcam" or "gradcam++"
    raw: np.ndarray  # float32 map at the layer's own resolution (e.g. 7x7), before upsampling
    output_index: int | None = None  # a detector's output row explained (None for a classifier)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape


class CAM:
    """Base of gradient-based class activation maps. Subclasses override ``channel_weights`` only.

    ``model`` is a Keras model taking raw 0-255 RGB, or a ``Predictor`` (its card then gives the
    class names). Building traces one ``tf.function`` for this model, layer and method; calls
    after that (any image, any target class) reuse it.
    """
    method = ""

    def __init__(self, model, layer: str | None = None, class_names=None):
        import tensorflow as tf

        model, self._prepare, class_names = model_parts(model, class_names)
        self.model = model
        self.layer = resolve_layer(model, layer)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.input_size = input_size(model)
        self.outputs = OutputLayout.of(model)
        self.num_classes = self.outputs.num_classes
        final = final_layer(model)
        head = score_head(final[1]) if final is not None else None
        self.uses_logits = head is not None
        taps = [(tuple(self.layer.split(LAYER_SEPARATOR)), "output")]
        if head is not None:
            taps.append((final[0], "input"))
        grad_model = tapped_model(model, taps)
        layout = self.outputs

        def explain(images, targets):
            # The algorithm, as in keras-io's grad_cam: one forward pass under a tape, one gradient.
            # Images of a batch do not interact (inference mode), so the gradient of the sum of their
            # target scores gives each image the gradient of its own score.
            with tf.GradientTape() as tape:
                pixels = tf.cast(images, tf.float32)
                tape.watch(pixels)  # so the tape records even when every layer is frozen
                probabilities, features, *head_input = grad_model(pixels, training=False)
                features = tf.cast(features, tf.float32)
                scores = head(head_input[0]) if head is not None else probabilities
                flat_probabilities = tf.reshape(tf.cast(probabilities, tf.float32), [tf.shape(pixels)[0], -1])
                targets = tf.where(targets < 0, layout.best(flat_probabilities), targets)
                flat_scores = tf.reshape(tf.cast(scores, tf.float32), [tf.shape(pixels)[0], -1])
                total = tf.reduce_sum(tf.gather(flat_scores, targets, batch_dims=1))
            grads = tape.gradient(total, features)
            weights = self.channel_weights(grads, features)  # (batch, channels)
            cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", features, weights))
            return cam, targets, tf.gather(flat_probabilities, targets, batch_dims=1)

        height, width = self.input_size
        self._explain = tf.function(
            explain,
            input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8), tf.TensorSpec([None], tf.int32)],
        )
        self._explain.get_concrete_function()  # trace now, so the first heatmap is as fast as the rest

    def channel_weights(self, grads, activations):
        """(batch, h, w, channels) gradients and activations -> (batch, channels) weights."""
        raise NotImplementedError

    def __call__(self, image, target_class=None) -> Heatmap:
        """Heatmap for ``image`` (any size, uint8 RGB; resized for the model and the map back to it).

        ``target_class``: a class index or name, a ``ClassTarget``, a ``BoxTarget`` (a detector's
        detection), or None (the top class; for a detector the best-scoring detection).
        """
        return self.batch([image], [target_class])[0]

    def batch(self, images, targets=None) -> list[Heatmap]:
        """Heatmaps for several images in one pass; ``targets`` one per image (None: each one's best)."""
        import cv2
        import tensorflow as tf

        pixels = [check_image(image) for image in images]
        targets = [None] * len(pixels) if targets is None else list(targets)
        if len(targets) != len(pixels):
            raise ModelError(f"{len(targets)} targets for {len(pixels)} images. Expected one target per image.")
        if not pixels:
            return []
        flat = [self.outputs.flat_index(target, self.class_names) for target in targets]
        cams, chosen, probabilities = self._explain(tf.constant(self._prepare(pixels)), tf.constant(flat, tf.int32))
        heatmaps = []
        for image, raw, position, probability in zip(pixels, cams.numpy(), chosen.numpy(), probabilities.numpy()):
            raw = raw.astype(np.float32)
            peak = float(raw.max())
            raw = raw / peak if peak > 0 and np.isfinite(peak) else np.zeros_like(raw)
            height, width = image.shape[:2]
            values = cv2.resize(raw, (width, height), interpolation=cv2.INTER_LINEAR)
            values = np.clip(values, 0.0, 1.0).astype(np.float32)
            output_index, target = self.outputs.position(int(position))
            heatmaps.append(Heatmap(values, target, self.label(target), float(probability), self.layer, self.method,
                                    raw, output_index))
        return heatmaps

    def label(self, index: int) -> str:
        return self.class_names[index] if self.class_names else str(index)


class GradCAM(CAM):
    """Selvaraju et al. 2017: a channel's weight is its gradient averaged over the map."""
    method = "gradcam"

    def channel_weights(self, grads, activations):
        import tensorflow as tf

        return tf.reduce_mean(grads, axis=(1, 2))


class GradCAMPlusPlus(CAM):
    """Chattopadhay et al. 2018: positive gradients weighted per location by the closed-form alphas.

    Same formula as pytorch-grad-cam; it takes the score as exp(logit), so higher derivatives
    become powers of the first one.
    """
    method = "gradcam++"

    def channel_weights(self, grads, activations):
        import tensorflow as tf

        grads_2 = grads**2
        grads_3 = grads_2 * grads
        sum_activations = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
        alphas = grads_2 / (2.0 * grads_2 + sum_activations * grads_3 + 1e-7)
        alphas = tf.where(grads != 0.0, alphas, 0.0)
        return tf.reduce_sum(alphas * tf.nn.relu(grads), axis=(1, 2))


_METHOD_CLASSES = {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}
_CACHE_SIZE = 8
_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def explainer(model, layer: str | None = None, method: str = "gradcam", class_names=None) -> CAM:
    """A built explainer for (model, layer, method), from a small cache: built once, reused after."""
    try:
        cls = _METHOD_CLASSES[method]
    except KeyError:
        raise ModelError(f"Unknown explanation method '{method}'. Expected one of: {', '.join(METHODS)}.") from None
    keras_model, _, names = model_parts(model, class_names)
    key = (id(keras_model), resolve_layer(keras_model, layer), method, tuple(names) if names is not None else None)
    with _cache_lock:
        # A cached explainer holds its model, so the id in the key cannot be reused while cached.
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        built = cls(model, key[1], class_names)
        _cache[key] = built
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return built


def gradcam(model, image, layer: str | None = None, target_class=None, method: str = "gradcam") -> Heatmap:
    """Heatmap of ``image`` for ``target_class`` (see ``CAM.__call__``; None: the top prediction or the
    best detection) with Grad-CAM or Grad-CAM++."""
    return explainer(model, layer, method)(image, target_class)


def model_parts(model, class_names):
    """(keras model, prepare(images) -> uint8 batch at the model's size, class names) for a model or a Predictor."""
    card = getattr(model, "card", None)
    if card is not None and hasattr(model, "prepare") and hasattr(model, "model"):
        return model.model, model.prepare, class_names if class_names is not None else card.class_names
    size = input_size(model)

    def prepare(images):
        return np.stack([resize(image, size) for image in images])

    return model, prepare, class_names


def input_size(model) -> tuple[int, int]:
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[2] is None:
        raise ModelError(f"Model '{model.name}' takes input {shape[1:]}. Expected a fixed (height, width, 3).")
    return int(shape[1]), int(shape[2])


def check_image(image) -> np.ndarray:
    pixels = getattr(image, "pixels", image)  # a DecodedImage, or an array
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise ImageError(f"Image has shape {pixels.shape}. Expected (height, width, 3) RGB.")
    if pixels.dtype != np.uint8:
        raise ImageError(f"Image has dtype {pixels.dtype}. Expected uint8 RGB (0-255).")
    return pixels


@dataclass(frozen=True)
class OutputLayout:
    """Where target scores sit in a model's output row: a classifier's (classes,) or a detector's
    decoded (boxes, 4 + classes), whose first four columns are the box and the rest its class scores."""

    num_classes: int
    boxes: int | None  # None for a classifier

    @classmethod
    def of(cls, model) -> OutputLayout:
        shape = tuple(model.outputs[0].shape)
        if len(shape) == 2:
            return cls(int(shape[-1]), None)
        if len(shape) == 3 and shape[1] is not None and shape[2] is not None and shape[2] > 4:
            return cls(int(shape[2]) - 4, int(shape[1]))
        raise ModelError(f"Model '{model.name}' has output shape {shape}. Expected (batch, classes) "
                         "or a detector's decoded (batch, boxes, 4 + classes).")

    @property
    def row_width(self) -> int:
        return self.num_classes + 4

    def flat_index(self, target, class_names) -> int:
        """The target's position in the flattened output row; -1 means "the best one"."""
        if target is None:
            return -1
        if isinstance(target, ClassTarget):
            target = target.index
        if not isinstance(target, BoxTarget):
            if self.boxes is not None:
                raise ModelError(f"Target {target!r} names a class only. Expected a BoxTarget: a detector explains "
                                 "one detection (its output row and class).")
            return class_index(target, self.num_classes, class_names)
        if self.boxes is None:
            raise ModelError(f"Target {target!r} names a detection, but the model is a classifier. Expected a "
                             "class index, name or ClassTarget.")
        return self.flat(int(target.output_index), class_index(target.class_index, self.num_classes, class_names))

    def flat(self, output_index: int | None, target_class: int) -> int:
        """The flat position of a class score (a classifier) or of one detection's class score."""
        if self.boxes is None:
            return target_class
        if not 0 <= output_index < self.boxes:
            raise ModelError(f"output_index={output_index}. Expected 0 to {self.boxes - 1} (the detector's rows).")
        return output_index * self.row_width + 4 + target_class

    def position(self, flat: int) -> tuple[int | None, int]:
        """(output row or None, class index) of a flat position."""
        if self.boxes is None:
            return None, flat
        return flat // self.row_width, flat % self.row_width - 4

    def best(self, flat_scores):
        """Per row of flattened outputs (a tensor or an array), the flat position of the best class
        score; for a detector, of the best-scoring detection's class."""
        from keras import ops

        if self.boxes is None:
            return ops.cast(ops.argmax(flat_scores, axis=1), "int32")
        class_scores = ops.reshape(flat_scores, (-1, self.boxes, self.row_width))[:, :, 4:]
        best = ops.cast(ops.argmax(ops.reshape(class_scores, (-1, self.boxes * self.num_classes)), axis=1), "int32")
        return best // self.num_classes * self.row_width + 4 + best % self.num_classes

    def scores(self, outputs: np.ndarray, flat: int) -> np.ndarray:
        """The score at ``flat`` for each row of a batch of raw outputs."""
        return np.asarray(outputs).reshape(len(outputs), -1)[:, flat]


def class_index(target_class, num_classes: int, class_names) -> int:
    if isinstance(target_class, str):
        if class_names and target_class in class_names:
            return list(class_names).index(target_class)
        known = f"one of the model's {len(class_names)} class names" if class_names else "a class index"
        raise ModelError(f"Unknown target class '{target_class}'. Expected {known}.")
    index = int(target_class)
    if not 0 <= index < num_classes:
        raise ModelError(f"target_class={index}. Expected 0 to {num_classes - 1}.")
    return index

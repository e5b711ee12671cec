"""Explainability: Grad-CAM and Grad-CAM++ heatmaps, overlays, and a faithfulness check.

Both methods share one base class, ``CAM``. The base runs the model to get the feature map
of a chosen layer and the gradient of the target class score with respect to it; a subclass
only says how to turn those into one weight per channel (``channel_weights``). The map is
``relu(sum_k weight_k * feature_map_k)``, scaled to [0, 1] and upsampled bilinearly.

Layers inside nested models (a Keras-applications backbone inside the classifier) work:
``_tapped_model`` re-wires the model so that it also returns the wanted inner tensors,
sharing every layer and weight with the original (nothing about the model is changed).

Inputs are raw 0-255 RGB, like everywhere in imgrec: preprocessing is inside the model.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from imgrec.errors import ImageError, ImgrecError, ModelError
from imgrec.predict import MAX_BATCH

METHODS = ("gradcam", "gradcam++")
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "magma")
BASELINES = ("blur", "black", "gray")
MAX_STEPS = MAX_BATCH - 1  # deletion/insertion: steps + 1 images fit one Predictor batch
LAYER_SEPARATOR = "/"

# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class Heatmap:
    values: np.ndarray  # float32 (height, width) in [0, 1], same height and width as the image given
    target_class: int  # index into the model's outputs
    label: str  # class name when known, else the index as text
    probability: float  # the model's probability for target_class on this image
    layer: str  # qualified name of the layer explained, e.g. "backbone/out_relu"
    method: str  # "gradcam" or "gradcam++"
    raw: np.ndarray  # float32 map at the layer's own resolution (e.g. 7x7), before upsampling

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape


@dataclass(frozen=True, eq=False)
class Faithfulness:
    """Deletion and insertion curves (Petsiuk et al., RISE, 2018) of a heatmap and of random maps.

    Deletion: the most salient pixels are replaced by the baseline first; a faithful map makes
    the target probability fall fast, so a LOW area under the curve is good. Insertion: the most
    salient pixels are put back into the baseline first; a HIGH area is good.
    """

    target_class: int
    baseline: str
    fractions: np.ndarray  # (steps + 1,) fraction of pixels deleted / inserted, 0 .. 1
    deletion: np.ndarray  # target-class probability along the deletion curve
    insertion: np.ndarray
    deletion_auc: float
    insertion_auc: float
    random_deletion: np.ndarray  # the same for random maps (mean over ``random_maps`` maps)
    random_insertion: np.ndarray
    random_deletion_auc: float
    random_insertion_auc: float

    @property
    def better_than_random(self) -> bool:
        return self.deletion_auc < self.random_deletion_auc and self.insertion_auc > self.random_insertion_auc


# ---------------------------------------------------------------------------------------------
# Layers: which ones can be explained, and how to reach one inside nested models


def candidate_layers(model) -> list[str]:
    """Qualified names ("backbone/out_relu") of the layers with a 4-D feature-map output, in graph order.

    Layers before the first convolution (input, preprocessing, padding) are left out: they are
    pixels, not features. The last entry is the default layer.
    """
    return [name for name, _, _, candidate in _layer_index(model) if candidate]


def default_layer(model) -> str:
    candidates = candidate_layers(model)
    if not candidates:
        raise ModelError(f"Model '{model.name}' has no layer with a 4-D feature-map output; Grad-CAM needs one.")
    return candidates[-1]


def resolve_layer(model, layer: str | None = None) -> str:
    """The qualified name for ``layer`` (None: the default; a bare name like "out_relu" is found in nested models)."""
    if layer is None:
        return default_layer(model)
    index = _layer_index(model)
    candidates = [name for name, _, _, candidate in index if candidate]
    if layer in candidates:
        return layer
    matches = [name for name in candidates if name.rsplit(LAYER_SEPARATOR, 1)[-1] == layer]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ModelError(
            f"Layer name '{layer}' is ambiguous in model '{model.name}'. Expected one of: {', '.join(matches)}."
        )
    known = {name: shape for name, _, shape, _ in index}
    bare = {name.rsplit(LAYER_SEPARATOR, 1)[-1]: name for name in known}
    name = layer if layer in known else bare.get(layer)
    if name is None:
        problem = f"Model '{model.name}' has no layer '{layer}'."
    elif shape_rank(known[name]) != 4:
        problem = (
            f"Layer '{layer}' has output shape {known[name]}, not a 4-D feature map (batch, height, width, channels)."
        )
    else:
        problem = f"Layer '{layer}' comes before the first convolution: it holds pixels, not features."
    raise ModelError(f"{problem} Expected one of: {_choices(candidates)}.")


def shape_rank(shape) -> int:
    return -1 if shape is None else len(shape)


def _choices(names: list[str], limit: int = 12) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[-limit:])} (the last {limit} of {len(names)}; see candidate_layers())"


def _layer_index(model, prefix: str = "", seen_conv: list | None = None) -> list[tuple]:
    """(qualified name, layer, output shape, is a candidate) for every layer, nested models expanded in place."""
    import keras

    seen_conv = [False] if seen_conv is None else seen_conv
    rows = []
    for layer in model.layers:
        name = prefix + layer.name
        if isinstance(layer, keras.Model):
            rows.extend(_layer_index(layer, name + LAYER_SEPARATOR, seen_conv))
            continue
        if any(len(weight.shape) == 4 for weight in layer.weights):  # a convolution kernel
            seen_conv[0] = True
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):  # never called (unused) or not a graph layer
            shape = None
        rows.append((name, layer, shape, seen_conv[0] and shape_rank(shape) == 4))
    return rows


def _final_layer(model) -> tuple[tuple[str, ...], object] | None:
    """Path and layer whose call produces the model's output, looking into a nested model that ends the graph."""
    import keras

    history = getattr(model.outputs[0], "_keras_history", None)
    layer = getattr(history, "operation", None)
    if not any(layer is known for known in model.layers):  # e.g. a bare keras.ops call: not a layer to tap
        return None
    if isinstance(layer, keras.Model):
        inner = _final_layer(layer)
        return None if inner is None else ((layer.name, *inner[0]), inner[1])
    return (layer.name,), layer


def _tapped_model(model, taps: list[tuple[tuple[str, ...], str]]):
    """A model from ``model``'s input to ``[model output, *tapped tensors]``, sharing all layers and weights.

    Each tap is (path of layer names, "input" | "output"); a path longer than one name goes into a
    nested model. ``model.get_layer(name).output`` cannot be used across nesting (the inner tensor
    belongs to the inner graph), so each nested model on a path is itself re-wired to return its
    taps as extra outputs, and the outer graph is rebuilt with ``clone_model`` (layers reused, not
    copied) calling that re-wired model in its place.
    """
    import keras

    if isinstance(model, keras.Sequential):  # clone_model re-wires only functional graphs
        model = keras.Model(model.inputs, model.outputs)
    nested: dict[int, tuple[object, list[int]]] = {}
    local: dict[int, list[tuple[int, str]]] = {}
    for i, (path, where) in enumerate(taps):
        layer = model.get_layer(path[0])
        if len(path) > 1:
            nested.setdefault(id(layer), (layer, []))[1].append(i)
        else:
            local.setdefault(id(layer), []).append((i, where))
    rewired = {
        key: (_tapped_model(layer, [(taps[i][0][1:], taps[i][1]) for i in indices]), indices)
        for key, (layer, indices) in nested.items()
    }
    found: list = [None] * len(taps)

    def call(layer, *args, **kwargs):
        if id(layer) in rewired:
            inner, indices = rewired[id(layer)]
            output, *tapped = inner(*args, **kwargs)
            for i, tensor in zip(indices, tapped):
                found[i] = tensor
        else:
            output = layer(*args, **kwargs)
        for i, where in local.get(id(layer), []):
            found[i] = args[0] if where == "input" else output
        return output

    clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    missing = [LAYER_SEPARATOR.join(taps[i][0]) for i, tensor in enumerate(found) if tensor is None]
    if missing:
        raise ModelError(
            f"Layer {', '.join(missing)} is not on the path from the input to the output of '{model.name}'."
        )
    return keras.Model(clone.input, [clone.outputs[0], *found])


def _score_head(final_layer):
    """How to get class scores from the tensor tapped at the final layer, and whether they are logits.

    Grad-CAM is defined on the pre-softmax score y^c (Selvaraju et al.) and Grad-CAM++'s closed
    form assumes an exponential of it. The probability would also work, but the softmax couples
    classes (d p_c = p_c (d y_c - sum_j p_j d y_j)) and saturates: for a confident prediction
    (p_c near 1) its gradient vanishes and the map turns into noise. So when the model ends in a
    softmax Dense (every imgrec model, and the stock ImageNet head) or a softmax Activation, we
    recompute the logits from its input: one matmul with the layer's own weights, no model change.
    Otherwise (any other final layer) we fall back to the model's output, the class probability.
    """
    import keras

    activation = getattr(getattr(final_layer, "activation", None), "__name__", "")
    if activation != "softmax":
        return None
    if type(final_layer) is keras.layers.Activation:
        return lambda logits: logits
    plain_dense = (
        type(final_layer) is keras.layers.Dense
        and getattr(final_layer, "quantization_mode", None) is None
        and not getattr(final_layer, "lora_enabled", False)
    )
    if not plain_dense:
        return None

    def logits(inputs):
        outputs = keras.ops.matmul(inputs, keras.ops.cast(final_layer.kernel, inputs.dtype))
        return outputs + keras.ops.cast(final_layer.bias, inputs.dtype) if final_layer.use_bias else outputs

    return logits


# ---------------------------------------------------------------------------------------------
# Grad-CAM family


class CAM:
    """Base of gradient-based class activation maps. Subclasses override ``channel_weights`` only.

    ``model`` is a Keras model taking raw 0-255 RGB, or a ``Predictor`` (its card then gives the
    class names). Building traces one ``tf.function`` for this model, layer and method; calls
    after that (any image, any target class) reuse it.
    """

    method = ""

    def __init__(self, model, layer: str | None = None, class_names=None):
        import tensorflow as tf

        model, self._prepare, class_names = _unwrap(model, class_names)
        self.model = model
        self.layer = resolve_layer(model, layer)
        self.class_names = tuple(class_names) if class_names is not None else None
        self.input_size = _input_size(model)
        self.num_classes = int(model.outputs[0].shape[-1])
        final = _final_layer(model)
        head = _score_head(final[1]) if final is not None else None
        self.uses_logits = head is not None
        taps = [(tuple(self.layer.split(LAYER_SEPARATOR)), "output")]
        if head is not None:
            taps.append((final[0], "input"))
        grad_model = _tapped_model(model, taps)

        def explain(image, target):
            # The algorithm, as in keras-io's grad_cam: one forward pass under a tape, one gradient.
            with tf.GradientTape() as tape:
                pixels = tf.cast(image, tf.float32)
                tape.watch(pixels)  # so the tape records even when every layer is frozen
                probabilities, features, *head_input = grad_model(pixels, training=False)
                features = tf.cast(features, tf.float32)
                scores = head(head_input[0]) if head is not None else probabilities
                target = tf.where(target < 0, tf.argmax(probabilities[0], output_type=tf.int32), target)
                score = tf.cast(scores[0, target], tf.float32)
            grads = tape.gradient(score, features)
            weights = self.channel_weights(grads, features)  # (batch, channels)
            cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", features, weights))[0]
            return cam, target, tf.cast(probabilities[0, target], tf.float32)

        height, width = self.input_size
        self._explain = tf.function(
            explain,
            input_signature=[tf.TensorSpec([1, height, width, 3], tf.uint8), tf.TensorSpec([], tf.int32)],
        )
        self._explain.get_concrete_function()  # trace now, so the first heatmap is as fast as the rest

    def channel_weights(self, grads, activations):
        """(batch, h, w, channels) gradients and activations -> (batch, channels) weights."""
        raise NotImplementedError

    def __call__(self, image, target_class: int | str | None = None) -> Heatmap:
        """Heatmap for ``image`` (any size, uint8 RGB; resized for the model and the map back to it)."""
        import cv2
        import tensorflow as tf

        pixels = _check_image(image)
        target = -1 if target_class is None else _class_index(target_class, self.num_classes, self.class_names)
        batch = self._prepare([pixels])
        cam, target, probability = self._explain(tf.constant(batch), tf.constant(target, tf.int32))
        raw = cam.numpy().astype(np.float32)
        peak = float(raw.max())
        raw = raw / peak if peak > 0 and np.isfinite(peak) else np.zeros_like(raw)
        height, width = pixels.shape[:2]
        values = cv2.resize(raw, (width, height), interpolation=cv2.INTER_LINEAR)
        values = np.clip(values, 0.0, 1.0).astype(np.float32)
        target = int(target.numpy())
        return Heatmap(values, target, self.label(target), float(probability.numpy()), self.layer, self.method, raw)

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
    keras_model, _, names = _unwrap(model, class_names)
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


def gradcam(
    model, image, layer: str | None = None, target_class: int | str | None = None, method: str = "gradcam"
) -> Heatmap:
    """Heatmap of ``image`` for ``target_class`` (None: the top prediction) with Grad-CAM or Grad-CAM++."""
    return explainer(model, layer, method)(image, target_class)


# ---------------------------------------------------------------------------------------------
# Rendering


@lru_cache(maxsize=None)
def _lookup_table(colormap: str) -> np.ndarray:
    from matplotlib import colormaps

    if colormap not in COLORMAPS:
        raise ImgrecError(f"Unknown colormap '{colormap}'. Expected one of: {', '.join(COLORMAPS)}.")
    table = colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(table * 255).astype(np.uint8)


def colorize(heatmap, colormap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] (or a ``Heatmap``) -> (H, W, 3) uint8 RGB through a matplotlib colormap."""
    values = _heat_values(heatmap)
    indices = np.round(np.clip(np.nan_to_num(values), 0.0, 1.0) * 255).astype(np.uint8)
    return _lookup_table(colormap)[indices]


def overlay(image, heatmap, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """The colorized heatmap blended over the image: (1 - alpha) * image + alpha * colors, uint8 RGB."""
    import cv2

    pixels = _check_image(image)
    if not 0.0 <= alpha <= 1.0:
        raise ImgrecError(f"alpha={alpha}. Expected a value from 0 to 1.")
    values = _heat_values(heatmap)
    height, width = pixels.shape[:2]
    if values.shape != (height, width):
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    colors = colorize(values, colormap).astype(np.float32)
    blended = (1.0 - alpha) * pixels.astype(np.float32) + alpha * colors
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def to_png_bytes(array) -> bytes:
    """PNG bytes of a uint8 RGB image, a uint8 grey image, or a float heatmap in [0, 1]."""
    from PIL import Image

    values = _heat_values(array) if isinstance(array, Heatmap) else np.asarray(array)
    if values.dtype != np.uint8:
        values = np.round(np.clip(np.nan_to_num(values.astype(np.float32)), 0.0, 1.0) * 255).astype(np.uint8)
    if values.ndim not in (2, 3) or (values.ndim == 3 and values.shape[2] not in (3, 4)):
        raise ImageError(
            f"Cannot write an array of shape {values.shape} as PNG. Expected (H, W), (H, W, 3) or (H, W, 4)."
        )
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(values)).save(buffer, format="PNG")
    return buffer.getvalue()


def _heat_values(heatmap) -> np.ndarray:
    values = heatmap.values if isinstance(heatmap, Heatmap) else np.asarray(heatmap)
    if values.ndim != 2:
        raise ImgrecError(f"Heatmap has shape {values.shape}. Expected (height, width).")
    return values.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# Faithfulness: deletion and insertion


def deletion_insertion(
    model,
    image,
    heatmap,
    target_class: int | str | None = None,
    steps: int = 16,
    baseline: str = "blur",
    random_maps: int = 3,
    seed: int = 0,
) -> Faithfulness:
    """Deletion and insertion AUCs of ``heatmap`` for ``target_class``, and of random maps for reference.

    Works at the model's input size. Each curve is ONE batched inference of ``steps + 1`` images
    (0 %, 1/steps, ... 100 % of the pixels changed, most salient first); ``steps`` is at most 31
    so that a Predictor, which splits batches above 32, still makes one call. ``target_class`` None
    means the heatmap's target (or the top prediction for a bare array). The random maps are
    smooth, at the heatmap's own resolution, so the comparison is about *where*, not *how blobby*.
    """
    import cv2

    keras_model, prepare, class_names = _unwrap(model, None)
    predict = _batch_predictor(model)
    if baseline not in BASELINES:
        raise ImgrecError(f"Unknown baseline '{baseline}'. Expected one of: {', '.join(BASELINES)}.")
    if not 2 <= steps <= MAX_STEPS:
        raise ImgrecError(f"steps={steps}. Expected 2 to {MAX_STEPS}.")
    pixels = prepare([_check_image(image)])[0]
    height, width = pixels.shape[:2]
    values = _heat_values(heatmap)
    if values.shape != (height, width):
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    num_classes = int(keras_model.outputs[0].shape[-1])
    if target_class is None and isinstance(heatmap, Heatmap):
        target_class = heatmap.target_class
    target = None if target_class is None else _class_index(target_class, num_classes, class_names)
    filler = _baseline(pixels, baseline)
    rng = np.random.default_rng(seed)
    fractions = np.linspace(0.0, 1.0, steps + 1)

    def curves(saliency: np.ndarray, target: int | None):
        # Rank pixels by saliency (ties in random order), then mask the top k for every step at once.
        order = np.lexsort((rng.random(saliency.size), -saliency.ravel()))
        rank = np.empty(saliency.size, np.int64)
        rank[order] = np.arange(saliency.size)
        counts = np.round(fractions * saliency.size).astype(np.int64)
        masks = (rank.reshape(height, width)[None] < counts[:, None, None])[..., None]
        deleted = predict(np.where(masks, filler, pixels))
        if target is None:
            target = int(np.argmax(deleted[0]))  # step 0 is the untouched image
        inserted = predict(np.where(masks, pixels, filler))
        return deleted[:, target], inserted[:, target], target

    deletion, insertion, target = curves(values, target)
    grid = heatmap.raw.shape if isinstance(heatmap, Heatmap) else (7, 7)
    random_curves = [
        curves(cv2.resize(rng.random(grid).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR), target)
        for _ in range(max(1, random_maps))
    ]
    random_deletion = np.mean([c[0] for c in random_curves], axis=0)
    random_insertion = np.mean([c[1] for c in random_curves], axis=0)
    return Faithfulness(
        target_class=target,
        baseline=baseline,
        fractions=fractions,
        deletion=deletion,
        insertion=insertion,
        deletion_auc=_auc(fractions, deletion),
        insertion_auc=_auc(fractions, insertion),
        random_deletion=random_deletion,
        random_insertion=random_insertion,
        random_deletion_auc=_auc(fractions, random_deletion),
        random_insertion_auc=_auc(fractions, random_insertion),
    )


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def _baseline(pixels: np.ndarray, kind: str) -> np.ndarray:
    import cv2

    if kind == "blur":
        # Strong enough to remove object detail (sigma ~ 1/20 of the image side) but keep colours.
        sigma = max(pixels.shape[:2]) / 20.0
        return cv2.GaussianBlur(pixels, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    if kind == "black":
        return np.zeros_like(pixels)
    return np.full_like(pixels, 128)


# ---------------------------------------------------------------------------------------------
# Helpers


def _unwrap(model, class_names):
    """(keras model, prepare(images) -> uint8 batch at the model's size, class names) for a model or a Predictor."""
    card = getattr(model, "card", None)
    if card is not None and hasattr(model, "prepare") and hasattr(model, "model"):
        return model.model, model.prepare, class_names if class_names is not None else card.class_names
    size = _input_size(model)

    def prepare(images):
        from imgrec.images import resize

        return np.stack([resize(image, size) for image in images])

    return model, prepare, class_names


def _input_size(model) -> tuple[int, int]:
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[2] is None:
        raise ModelError(f"Model '{model.name}' takes input {shape[1:]}. Expected a fixed (height, width, 3).")
    return int(shape[1]), int(shape[2])


def _batch_predictor(model):
    """predict(uint8 batch) -> probabilities: a Predictor's compiled function, or a plain Keras model
    called as it is (the app always passes a Predictor; a plain model serves notebooks and tests)."""
    if hasattr(model, "predict_batch") and hasattr(model, "card"):
        return model.predict_batch
    return lambda batch: np.asarray(model(np.asarray(batch, np.float32), training=False), np.float32)


def _check_image(image) -> np.ndarray:
    pixels = getattr(image, "pixels", image)  # a DecodedImage, or an array
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise ImageError(f"Image has shape {pixels.shape}. Expected (height, width, 3) RGB.")
    if pixels.dtype != np.uint8:
        raise ImageError(f"Image has dtype {pixels.dtype}. Expected uint8 RGB (0-255).")
    return pixels


def _class_index(target_class, num_classes: int, class_names) -> int:
    if isinstance(target_class, str):
        if class_names and target_class in class_names:
            return list(class_names).index(target_class)
        known = f"one of the model's {len(class_names)} class names" if class_names else "a class index"
        raise ModelError(f"Unknown target class '{target_class}'. Expected {known}.")
    index = int(target_class)
    if not 0 <= index < num_classes:
        raise ModelError(f"target_class={index}. Expected 0 to {num_classes - 1}.")
    return index

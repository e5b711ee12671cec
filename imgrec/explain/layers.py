"""Layers that can be explained, and how to reach one inside nested models.

Layers inside nested models (a Keras-applications backbone inside the classifier) work:
``tapped_model`` re-wires the model so that it also returns the wanted inner tensors,
sharing every layer and weight with the original (nothing about the model is changed).
"""

from __future__ import annotations

from imgrec.core.errors import ModelError

LAYER_SEPARATOR = "/"


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


def resolve_layers(model, layer: str | None = None) -> tuple[str, ...]:
    """The layers to explain: ``layer`` alone when chosen, else the automatic choice — the default
    layer, or for a model whose last layer reads several feature maps (a detector's YOLO heads)
    the features each head reads (the explainer keeps the one the target's score comes from)."""
    if layer is not None:
        return (resolve_layer(model, layer),)
    return tuple(branch_layers(model)) or (default_layer(model),)


def branch_layers(model) -> list[str]:
    """Qualified names of the features each input of the model's last layer is computed from, when
    that layer reads two or more feature maps; [] otherwise. For a YOLO detector: one per head, the
    input of the head's final convolution (``backbone/bn119``, ``backbone/bn128``)."""
    last = getattr(getattr(model.outputs[0], "_keras_history", None), "operation", None)
    if not any(last is known for known in model.layers):
        return []
    inputs = last.input if isinstance(last.input, (list, tuple)) else [last.input]
    if len(inputs) < 2:
        return []
    candidates = set(candidate_layers(model))
    found = []
    for tensor in inputs:
        head = _producer(tensor)
        features = _producer(head[1].input, head[0].rsplit(LAYER_SEPARATOR, 1)[0] + LAYER_SEPARATOR
                             if LAYER_SEPARATOR in head[0] else "") if head else None
        for choice in (features, head):
            if choice is not None and choice[0] in candidates:
                found.append(choice[0])
                break
        else:
            return []
    return found


def _producer(tensor, prefix: str = "") -> tuple[str, object] | None:
    """(qualified name, layer) of the layer whose call made ``tensor``, looking into nested models."""
    import keras

    if isinstance(tensor, (list, tuple)):
        return None
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    operation, _, tensor_index = history
    if isinstance(operation, keras.Model):
        return _producer(operation.outputs[tensor_index], prefix + operation.name + LAYER_SEPARATOR)
    if isinstance(operation, keras.layers.InputLayer) or not isinstance(operation, keras.layers.Layer):
        return None
    return prefix + operation.name, operation


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


def final_layer(model) -> tuple[tuple[str, ...], object] | None:
    """Path and layer whose call produces the model's output, looking into a nested model that ends the graph."""
    import keras

    history = getattr(model.outputs[0], "_keras_history", None)
    layer = getattr(history, "operation", None)
    if not any(layer is known for known in model.layers):  # e.g. a bare keras.ops call: not a layer to tap
        return None
    if isinstance(layer, keras.Model):
        inner = final_layer(layer)
        return None if inner is None else ((layer.name, *inner[0]), inner[1])
    return (layer.name,), layer


def tapped_model(model, taps: list[tuple[tuple[str, ...], str]]):
    """A model from ``model``'s input to ``[*model outputs, *tapped tensors]``, sharing all layers and weights.

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
        key: (tapped_model(layer, [(taps[i][0][1:], taps[i][1]) for i in indices]), indices)
        for key, (layer, indices) in nested.items()
    }
    found: list = [None] * len(taps)

    def call(layer, *args, **kwargs):
        if id(layer) in rewired:
            inner, indices = rewired[id(layer)]
            results = inner(*args, **kwargs)
            # A nested model may have several outputs (a detector's backbone: one per YOLO head).
            count = len(layer.outputs)
            output = results[0] if count == 1 else list(results[:count])
            for i, tensor in zip(indices, results[count:]):
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
    return keras.Model(clone.input, [*clone.outputs, *found])


def score_head(final_layer):
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

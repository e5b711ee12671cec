"""YOLO detectors as imgrec models: raw uint8 RGB in, decoded boxes and per-class scores out.

The box decoding is a serializable Keras layer inside the saved model, so Keras, TFLite and ONNX give the
same ``(batch, boxes, 4 + classes)`` output; thresholds and non-maximum suppression happen afterwards, in
one place (``imgrec.tasks.detection``).
"""

from __future__ import annotations

import keras
from keras import layers, ops

from imgrec.core.errors import ModelError
from imgrec.modeling.yolo_spec import YoloHeadSpec

DECODE_LAYER_NAME = "yolo_decode"
RAW_MODEL_NAME = "backbone"  # the nested raw network, where Grad-CAM looks for layers as in every imgrec model


@keras.saving.register_keras_serializable(package="imgrec")
class YoloDecode(layers.Layer):
    """Raw Darknet-style YOLO heads (NHWC, ``anchors × (4 + 1 + classes)`` channels) → ``(batch, boxes, 4 + classes)``:
    x1, y1, x2, y2 as fractions of the image, then objectness × class probability per class.

    Standard YOLOv3 rule (``scale_x_y`` = 1): centre = (sigmoid(t) + cell) / grid, size = exp(t) × anchor / input.
    Rows are ordered head by head, then cell (row-major), then anchor.
    """

    def __init__(self, input_size, anchors, masks, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.spec = YoloHeadSpec.from_dict(dict(input_size=input_size, anchors=anchors, masks=masks,
                                                num_classes=num_classes))

    def call(self, heads):
        heads = list(heads) if isinstance(heads, (list, tuple)) else [heads]
        height, width = self.spec.input_size
        channels = 5 + self.spec.num_classes
        decoded = []
        for head, mask in zip(heads, self.spec.masks, strict=True):
            grid_h, grid_w = int(head.shape[1]), int(head.shape[2])
            per_cell = len(mask)
            t = ops.reshape(ops.cast(head, "float32"), (-1, grid_h, grid_w, per_cell, channels))
            cells_x = ops.reshape(ops.arange(grid_w, dtype="float32"), (1, 1, grid_w, 1))
            cells_y = ops.reshape(ops.arange(grid_h, dtype="float32"), (1, grid_h, 1, 1))
            anchor_w = ops.convert_to_tensor([self.spec.anchors[a][0] / width for a in mask], dtype="float32")
            anchor_h = ops.convert_to_tensor([self.spec.anchors[a][1] / height for a in mask], dtype="float32")
            centre_x = (ops.sigmoid(t[..., 0]) + cells_x) / grid_w
            centre_y = (ops.sigmoid(t[..., 1]) + cells_y) / grid_h
            half_w = ops.exp(t[..., 2]) * anchor_w / 2
            half_h = ops.exp(t[..., 3]) * anchor_h / 2
            boxes = ops.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], axis=-1)
            scores = ops.sigmoid(t[..., 4:5]) * ops.sigmoid(t[..., 5:])
            rows = ops.concatenate([boxes, scores], axis=-1)
            decoded.append(ops.reshape(rows, (-1, grid_h * grid_w * per_cell, 4 + self.spec.num_classes)))
        return decoded[0] if len(decoded) == 1 else ops.concatenate(decoded, axis=1)

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        boxes = sum(int(s[1]) * int(s[2]) * len(m) for s, m in zip(shapes, self.spec.masks, strict=True))
        return (shapes[0][0], boxes, 4 + self.spec.num_classes)

    def get_config(self):
        return {**super().get_config(), **self.spec.to_dict()}


def detector_from_raw(raw_model, spec: YoloHeadSpec) -> keras.Model:
    """Wrap a raw YOLO network (float [0, 1] RGB in, one head per ``spec.masks`` entry out) into an imgrec
    detector: uint8 RGB ``(batch, H, W, 3)`` in → ``(batch, boxes, 4 + classes)`` out."""
    height, width = spec.input_size
    raw_input = tuple(raw_model.inputs[0].shape[1:])
    if raw_input != (height, width, 3):
        raise ModelError(f"The raw detector takes input {raw_input}. Expected {(height, width, 3)} from its head spec.")
    expected_channels = [len(mask) * (5 + spec.num_classes) for mask in spec.masks]
    channels = [int(output.shape[-1]) for output in raw_model.outputs]
    if channels != expected_channels:
        raise ModelError(f"The raw detector's heads have {channels} channels. Expected {expected_channels} "
                         f"({[len(m) for m in spec.masks]} anchors × (5 + {spec.num_classes} classes)).")
    raw_model.name = RAW_MODEL_NAME
    inputs = keras.Input((height, width, 3), dtype="uint8", name="image")
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    heads = raw_model(x)
    outputs = YoloDecode(**spec.to_dict(), name=DECODE_LAYER_NAME)(heads)
    return keras.Model(inputs, outputs, name="yolo_detector")

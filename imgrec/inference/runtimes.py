"""Serving backends: run any export with the Predictor's contract, uint8 batch in, probabilities out.

``open_backend(fmt, path, card)`` gives an object with ``predict_batch((N, H, W, 3) uint8) ->
(N, classes) float32``, like :meth:`imgrec.inference.predictor.Predictor.predict_batch`:

* ``savedmodel``  - TensorFlow, the ``serving_default`` signature;
* ``tflite-*``    - the LiteRT ``Interpreter`` (``ai-edge-litert``), quantized outputs dequantized;
* ``onnx``        - ONNX Runtime on the CPU.

Which backend serves a model version is a choice stored beside its exports
(``exports/serving.json``; ``keras`` when absent); ``imgrec.inference.predictor.Predictor.load`` serves
through it, so ``predict``, ``top_k`` and the rest stay the same. Only an export whose parity status is ``ok`` and whose files still match the
checksums recorded at export time can be chosen or served.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from imgrec.core.errors import ModelError
from imgrec.core.settings import Settings
from imgrec.registry import catalog, exports
from imgrec.registry.card import ModelCard

# Images per inference call: every runtime (and the Keras predictor) splits larger batches into chunks.
MAX_BATCH = 32



class SavedModelBackend:
    format = "savedmodel"

    def __init__(self, path: Path, card: ModelCard):
        import tensorflow as tf

        self.card = card
        self._loaded = tf.saved_model.load(str(path))
        self._signature = self._loaded.signatures["serving_default"]
        self._input = next(iter(self._signature.structured_input_signature[1]))

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        chunks = []
        for i in range(0, len(batch), MAX_BATCH):
            outputs = self._signature(**{self._input: tf.constant(batch[i : i + MAX_BATCH], tf.uint8)})
            chunks.append(next(iter(outputs.values())).numpy())
        return _concat(chunks, self.card)


class TFLiteBackend:
    """The LiteRT interpreter is not thread-safe: one call at a time, input resized per batch size."""

    def __init__(self, path: Path, card: ModelCard, fmt: str = "tflite", num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.format = fmt
        self.card = card
        # All cores, like TensorFlow and ONNX Runtime do by default (the interpreter's own default is fewer).
        threads = num_threads or min(4, os.cpu_count() or 1)
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch_size = None
        self._lock = threading.Lock()

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            chunks = [self._run(batch[i : i + MAX_BATCH]) for i in range(0, len(batch), MAX_BATCH)]
        return _concat(chunks, self.card)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        interpreter = self._interpreter
        if self._batch_size != len(batch):
            interpreter.resize_tensor_input(self._input["index"], [len(batch), *batch.shape[1:]], strict=True)
            interpreter.allocate_tensors()
            self._input = interpreter.get_input_details()[0]
            self._output = interpreter.get_output_details()[0]
            self._batch_size = len(batch)
        interpreter.set_tensor(self._input["index"], _quantize(batch, self._input))
        interpreter.invoke()
        return _dequantize(interpreter.get_tensor(self._output["index"]), self._output)


class OnnxBackend:
    format = "onnx"

    def __init__(self, path: Path, card: ModelCard):
        import onnxruntime as ort

        self.card = card
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        chunks = [self._session.run([self._output], {self._input: np.ascontiguousarray(batch[i : i + MAX_BATCH],
                                                                                      np.uint8)})[0]
                  for i in range(0, len(batch), MAX_BATCH)]
        return _concat(chunks, self.card)


def open_backend(fmt: str, path: Path, card: ModelCard):
    """A backend for the export at ``path`` (no checksum check: see :func:`load_backend`)."""
    path = Path(path)
    if fmt == "savedmodel":
        return SavedModelBackend(path, card)
    if fmt.startswith("tflite"):
        return TFLiteBackend(path, card, fmt)
    if fmt == "onnx":
        return OnnxBackend(path, card)
    raise ModelError(f"No serving backend for format '{fmt}'. Expected keras, savedmodel, tflite-* or onnx.")


def load_backend(name: str, version: str, fmt: str, settings: Settings):
    """A backend for a model version's export, after checking its parity status and checksums."""
    name, version = catalog.resolve(name, version, settings)
    exports.check_servable(name, version, fmt, settings)
    path = exports.verify_export(name, version, fmt, settings)
    return open_backend(fmt, path, catalog.load_card(name, version, settings))


# -- Helpers ---------------------------------------------------------------------------------------


def _quantize(batch: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(dtype, np.floating):
        return batch.astype(dtype)
    if scale and (scale, zero_point) != (1.0, 0):
        info = np.iinfo(dtype)
        return np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)
    return batch.astype(dtype)


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.issubdtype(values.dtype, np.integer) and scale:
        return (values.astype(np.float32) - zero_point) * scale
    return values.astype(np.float32)


def _concat(chunks: list[np.ndarray], card: ModelCard) -> np.ndarray:
    if not chunks:
        return np.zeros((0, card.num_classes), np.float32)
    return np.concatenate(chunks).astype(np.float32)

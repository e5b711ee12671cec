"""The predictor: one compiled inference function per model, batched, thread-safe, warmed on load."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from imgrec.core.errors import ImgrecError
from imgrec.core.images import DecodedImage, resize
from imgrec.core.settings import Settings
from imgrec.inference import runtimes
from imgrec.inference.runtimes import MAX_BATCH
from imgrec.registry import catalog, exports
from imgrec.registry.card import ModelCard
from imgrec.tasks.base import DecodeOptions
from imgrec.tasks.registry import task_for

log = logging.getLogger(__name__)


class Predictor:
    """Wraps a Keras model and its card. Call ``predict`` from any number of threads.

    Raw outputs become results through the card's task (``imgrec.tasks``), so the predictor is the
    same for every task.

    ``backend`` (an ``imgrec.inference.runtimes`` export backend) serves the predictions instead of the Keras
    graph; the Keras model stays loaded because Grad-CAM needs it whatever serves predictions.
    """

    def __init__(self, model, card: ModelCard, backend=None):
        import tensorflow as tf

        self.model = model
        self.card = card
        self.backend = backend
        self.task = task_for(card)
        height, width = card.input_size
        # One trace for every batch size: raw uint8 in, probabilities out; no Python per image.
        self._infer = tf.function(
            lambda batch: model(batch, training=False),
            input_signature=[tf.TensorSpec([None, height, width, 3], tf.uint8)],
        )
        self.warm_up()

    @classmethod
    def load(cls, name: str | None, version: str | None, settings: Settings,
             backend: str | None = None) -> Predictor:
        """``backend``: ``keras`` or an export format; default: the one chosen for this version (Models page)."""
        name, version = catalog.resolve(name, version, settings)
        chosen = backend or exports.serving_backend(name, version, settings)
        model, card = catalog.load_model(name, version, settings)
        if chosen != exports.KERAS:
            try:
                return cls(model, card, backend=runtimes.load_backend(name, version, chosen, settings))
            except ImgrecError as exc:
                if backend:  # asked for by name: say why not
                    raise
                # The stored choice went bad (export deleted, tampered, now diverging): serve with Keras.
                log.warning("Serving %s@%s with Keras: its %s export cannot be used (%s)", name, version, chosen, exc)
        return cls(model, card)

    @property
    def backend_name(self) -> str:
        return "keras" if self.backend is None else self.backend.format

    def warm_up(self) -> float:
        """Run one batch so the first user does not pay for tracing; returns seconds taken."""
        started = time.perf_counter()
        self.predict_batch(np.zeros((1, *self.card.input_size, 3), np.uint8))
        return time.perf_counter() - started

    def prepare(self, images: Sequence[np.ndarray | DecodedImage]) -> np.ndarray:
        """Resize each image to the card's input size and stack them into one uint8 batch."""
        pixels = [image.pixels if isinstance(image, DecodedImage) else image for image in images]
        return np.stack([resize(np.asarray(p, dtype=np.uint8), self.card.input_size) for p in pixels])

    def predict_outputs(self, images: Sequence[np.ndarray | DecodedImage]) -> np.ndarray:
        """Raw model outputs (a classifier's probabilities) for images of any size."""
        if len(images) == 0:
            return np.zeros((0, *self.model.outputs[0].shape[1:]), np.float32)
        return self.predict_batch(self.prepare(images))

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Raw outputs for an already prepared (N, H, W, 3) uint8 batch, in chunks of ``MAX_BATCH``."""
        if self.backend is not None:
            return self.backend.predict_batch(np.asarray(batch, np.uint8))
        chunks = [self._infer(batch[i : i + MAX_BATCH]).numpy() for i in range(0, len(batch), MAX_BATCH)]
        return np.concatenate(chunks).astype(np.float32)

    def predict(self, images: Sequence[np.ndarray | DecodedImage], options: DecodeOptions | None = None) -> list:
        """One task result per image, with ``latency_ms``: the inference time per image (resizing not
        included), as the API's micro-batches report it too, so every face logs the same quantity."""
        if len(images) == 0:
            return []
        batch = self.prepare(images)
        started = time.perf_counter()
        outputs = self.predict_batch(batch)
        return self.decode(outputs, options or DecodeOptions(), (time.perf_counter() - started) * 1000 / len(batch),
                           image_sizes(images))

    def decode(self, outputs: np.ndarray, options: DecodeOptions, latency_ms: float,
               sizes: list[tuple[int, int]] | None = None) -> list:
        """``sizes``: the original images' (height, width), so that boxes come back in their pixels."""
        return self.task.decode(outputs, self.card, options, latency_ms, image_sizes=sizes)


def image_sizes(images: Sequence[np.ndarray | DecodedImage]) -> list[tuple[int, int]]:
    """(height, width) of each image before ``Predictor.prepare`` stretches it to the model's input."""
    return [tuple(int(v) for v in np.shape(image.pixels if isinstance(image, DecodedImage) else image)[:2])
            for image in images]

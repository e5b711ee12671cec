"""A tiny real model and its card: every code path runs, in milliseconds; and the one classification task."""

from __future__ import annotations

from imgrec.tasks.classification import ClassificationTask

CLASSIFICATION = ClassificationTask()

TINY_CLASSES = ("cat", "dog", "bird")
TINY_SIZE = (32, 32)


def build_tiny_model(seed: int = 0):
    """A real (untrained but deterministic) small CNN: every code path runs, in milliseconds."""
    import keras

    from imgrec.modeling.build import build_model

    keras.utils.set_random_seed(seed)
    return build_model("small_cnn", len(TINY_CLASSES), TINY_SIZE, weights=None, head=CLASSIFICATION.head)


def tiny_card(name: str = "tiny-cnn", version: str = ""):
    from imgrec.registry.card import ModelCard

    return ModelCard(
        name=name,
        version=version,
        backbone="small_cnn",
        input_size=TINY_SIZE,
        preprocessing="unit",
        class_names=TINY_CLASSES,
        dataset="generated",
    )

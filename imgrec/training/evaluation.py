"""Evaluation of a model on a dataset split: outputs through the training pipeline, metrics from the task.

:func:`evaluate_model` runs a model over a dataset split and :func:`evaluate_registered` does the same
for a registered model (the ``python -m imgrec evaluate`` command); what is measured is the task's
(``Task.evaluate``), e.g. accuracy, F1s, the confusion matrix and calibration for a classifier.
"""

from __future__ import annotations

import numpy as np

from imgrec.core.refs import ModelRef
from imgrec.core.settings import Settings
from imgrec.datasets import loading, multilabel
from imgrec.registry import catalog
from imgrec.tasks.base import Task
from imgrec.tasks.classification_metrics import EvaluationError
from imgrec.tasks.registry import task_for

# -- Models on datasets ----------------------------------------------------------------------------


def predict_split(model, split, image_size, num_classes: int, batch_size: int = 64) -> np.ndarray:
    """Probabilities for every image of a split, in order, through the same pipeline as training."""
    import tensorflow as tf  # TensorFlow loads only when a model is evaluated

    if len(split) == 0:
        return np.zeros((0, num_classes), np.float32)
    infer = tf.function(lambda batch: model(batch, training=False))
    pipeline = loading.make_tf_dataset(split, tuple(image_size), num_classes, batch_size=batch_size, cache=False,
                               one_hot=False)
    return np.concatenate([infer(images).numpy() for images, _ in pipeline]).astype(np.float32)


def evaluate_model(model, task: Task, dataset, image_size, split: str = "test", calibrate_on: str | None = "val",
                   batch_size: int = 64):
    """Evaluate on ``split``; calibrate on ``calibrate_on`` (never on the split scored)."""
    calibration = None
    if calibrate_on and calibrate_on != split and len(dataset.splits.get(calibrate_on, [])):
        val = dataset.splits[calibrate_on]
        calibration = (val.labels, predict_split(model, val, image_size, dataset.num_classes, batch_size))
    target = dataset.splits[split]
    outputs = predict_split(model, target, image_size, dataset.num_classes, batch_size)
    return task.evaluate(target.labels, outputs, dataset.class_names, split, calibration=calibration)


def evaluate_registered(model_ref: str, dataset_name: str, split: str, settings: Settings,
                        limit_per_class: int | None = None, batch_size: int = 64, dataset_format: str | None = None):
    """Evaluate a registered model (``name`` or ``name@version``) on a dataset split.

    The dataset is split with the seed and fractions of the model's training run when its report
    records them, so ``val`` and ``test`` mean the same images as during training. ``dataset_format``: a
    label-set layout for a multi-label model (default: its run's)."""
    ref = ModelRef.parse(model_ref)
    model, card = catalog.load_model(ref.name, ref.version, settings)
    task = task_for(card)
    config = catalog.training_config(card.name, card.version, settings)
    # The run's split, with the evaluation's own per-class limit (none: the whole split).
    split_args = {**loading.dataset_split_args(config), "limit_per_class": limit_per_class}
    if task.label_sets:
        dataset = multilabel.load_multilabel_dataset(dataset_name, settings, dataset_format or config.get(
            "dataset_format", "csv"), **split_args)
    else:
        dataset = loading.load_dataset(dataset_name, settings, **split_args)
    if split not in dataset.splits:
        raise EvaluationError(f"No split '{split}'. Expected one of: {', '.join(dataset.splits)}.")
    if tuple(dataset.class_names) != tuple(card.class_names):
        raise EvaluationError(
            f"Model {card.ref} knows classes {', '.join(card.class_names[:6])}…, but dataset '{dataset_name}' has "
            f"{', '.join(dataset.class_names[:6])}…. Expected the same classes in the same order."
        )
    temperature = float(card.metrics.get("temperature", 1.0) or 1.0)
    target = dataset.splits[split]
    outputs = predict_split(model, target, card.input_size, card.num_classes, batch_size)
    return task.evaluate(target.labels, outputs, card.class_names, split, temperature=temperature,
                         **task.evaluation_options(card))

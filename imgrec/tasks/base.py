"""The task interface: everything that differs between tasks, behind one abstract class.

A task (single-label classification today; multi-label and detection plug in the same way, see
``docs/tasks.md``) says how its head is built and trained, how raw model outputs become result
objects, what its JSON and log rows hold, how it is evaluated, what Grad-CAM explains, and how an
export is judged against the Keras model. Faces and shared modules look the task up with
``imgrec.tasks.registry.task_for(card)`` and never test for a task themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imgrec.core.errors import ModelError


@dataclass(frozen=True)
class DecodeOptions:
    """What a caller may ask of decoding; each task reads the fields it understands."""

    top_k: int = 5
    # Detection: None means the model card's default (or every class).
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ClassTarget:
    """Explain the score of one output class (a class index into the card's class names)."""

    index: int
    label: str


@dataclass(frozen=True)
class BoxTarget:
    """Explain the score of one detection: class ``class_index`` of row ``output_index`` of a detector's
    decoded output ``(batch, boxes, 4 + classes)``."""

    output_index: int
    class_index: int
    label: str


@dataclass(frozen=True)
class Verdict:
    """A one-line judgement of a result for people: ``kind`` is "confident", "uncertain" or "none".

    ``out_of_distribution`` says the image looks unlike the model's classes ("outside this model's
    classes?"); ``figures`` holds what the judgement rests on (the task's own names, e.g. margin)."""

    kind: str
    text: str
    out_of_distribution: bool = False
    figures: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ParityJudgement:
    """An export's agreement with the Keras model: the task's figures, a status and why."""

    figures: dict[str, Any]
    ok: bool
    reason: str = ""


def dense_head(features, num_classes: int, dropout: float, activation: str):
    """Dropout then one dense layer of ``num_classes`` outputs: the classifiers' head (softmax or sigmoid)."""
    from keras import layers  # Keras loads only when a model is built

    if num_classes < 2:
        raise ModelError(f"num_classes={num_classes}. Expected at least 2.")
    x = layers.Dropout(dropout, name="dropout")(features)
    return layers.Dense(num_classes, activation=activation, name="predictions")(x)


def class_scores_shape_problem(output_shape: tuple, card) -> str | None:
    """Why a classifier's outputs are not one score per card class, or None when they are."""
    if len(output_shape) != 2:
        return f"Model {card.ref} gives outputs of shape {output_shape}. Expected (batch, classes)."
    if output_shape[-1] != card.num_classes:
        return f"Model {card.ref} has {output_shape[-1]} outputs, but its card lists {card.num_classes} class names."
    return None


class Task(ABC):
    """One task. Instances are stateless; the model card carries every per-model fact."""

    name: str  # the value of ``ModelCard.task``
    title: str  # for people
    monitor: str  # the validation metric training keeps the best epoch by (higher is better)
    losses: tuple[str, ...]  # the run config's ``loss`` choices, the default first
    parity_titles: dict[str, str]  # parity figure -> column title, in display order
    label_sets: bool = False  # trains on datasets whose images carry label sets (multi-hot labels)
    # The ``to_json`` field whose items are one batch row each (a detector's detections); None: one row per image.
    batch_rows_from: str | None = None

    # -- Modeling and training ------------------------------------------------------------------

    @abstractmethod
    def head(self, features, num_classes: int, dropout: float):
        """The output layers on top of pooled backbone features (a Keras tensor in, a tensor out)."""

    @abstractmethod
    def loss(self, config, train_labels=None):
        """The Keras loss for a run config (``imgrec.training.config.RunConfig``); ``train_labels`` (the
        training split's) let a task weigh classes by label frequency inside its loss."""

    @abstractmethod
    def training_metrics(self, num_classes: int) -> list:
        """Keras metrics compiled into training; ``monitor`` is among their validation names."""

    @abstractmethod
    def check_outputs(self, output_shape: tuple, card) -> str | None:
        """Why a model's output shape does not fit its card, or None when it does."""

    # -- Inference -------------------------------------------------------------------------------

    def check_options(self, options: DecodeOptions, card) -> str | None:
        """Why a caller's ``options`` cannot be used with this model (a user's mistake), or None."""
        return None

    @abstractmethod
    def decode(self, outputs: np.ndarray, card, options: DecodeOptions, latency_ms: float,
               image_sizes: Sequence[tuple[int, int]] | None = None) -> list:
        """One result object per row of raw model outputs; ``image_sizes`` are the original images'
        (height, width), for tasks whose results are in image pixels (None: the card's input size)."""

    @abstractmethod
    def to_json(self, result) -> dict[str, Any]:
        """The task's part of the result JSON shared by the API and the CLI."""

    @abstractmethod
    def summary(self, result) -> str:
        """The result on one line for people (the CLI's text output)."""

    @abstractmethod
    def log_labels(self, result) -> list[tuple[str, float]]:
        """Ranked (label, score) pairs the prediction log stores; the first is the headline label."""

    def log_boxes(self, result) -> list[tuple[str, float, float, float, float, float]] | None:
        """The boxes the prediction log stores, (label, score, x1, y1, x2, y2) best first; None: not a detector."""
        return None

    def log_label_set(self, result) -> list[tuple[str, float, float]] | None:
        """The labels found that the prediction log stores, (label, score, threshold); None: not multi-label."""
        return None

    @abstractmethod
    def verdict(self, result, threshold: float) -> Verdict:
        """How sure the result is, in words, with ``threshold`` from the settings."""

    # -- Explanation -----------------------------------------------------------------------------

    @abstractmethod
    def explanation_target(self, result, card, choice: str | None = None):
        """What Grad-CAM explains for ``result``: the chosen label, else the headline one."""

    # -- Evaluation and export parity -------------------------------------------------------------

    @abstractmethod
    def evaluate(self, y_true, outputs: np.ndarray, class_names, split: str, *,
                 calibration: tuple | None = None, temperature: float = 1.0):
        """An evaluation report of ``outputs`` against ``y_true``; ``calibration`` is (labels, outputs)
        of another split to fit calibration on, never the split scored."""

    def evaluation_options(self, card) -> dict:
        """Extra keyword arguments of ``evaluate`` for a registered model (e.g. its card's thresholds)."""
        return {}

    def card_decoding(self, report) -> dict:
        """What an evaluation report adds to the model card's ``decoding`` (e.g. tuned thresholds)."""
        return {}

    @abstractmethod
    def report_from_dict(self, data: dict):
        """A saved evaluation report (the ``report.json`` beside a trained model) read back."""

    @abstractmethod
    def parity(self, reference: np.ndarray, candidate: np.ndarray, card) -> ParityJudgement:
        """How an export's outputs agree with the Keras model's on the same held-out images."""

    @abstractmethod
    def parity_headline(self, figures: dict) -> str:
        """An export's parity figures on one terminal line."""

    @abstractmethod
    def parity_thresholds(self) -> dict[str, float]:
        """The limits ``parity`` judges by, recorded in the parity report."""

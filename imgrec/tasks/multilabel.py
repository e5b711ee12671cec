"""Multi-label classification: a sigmoid head, every label over its class's threshold (thresholds in the model
card), BCE/focal/asymmetric losses, scikit-learn metrics, and export parity judged per label."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgrec.core.errors import ModelError
from imgrec.tasks import multilabel_metrics
from imgrec.tasks.base import (
    ClassTarget,
    DecodeOptions,
    ParityJudgement,
    Task,
    Verdict,
    class_scores_shape_problem,
    dense_head,
)

THRESHOLDS = "thresholds"  # the card's ``decoding`` key: one decision threshold per class, in class order
# An export whose present/absent decisions at the card's thresholds agree with Keras on fewer
# (image, label) pairs than this, or on fewer whole label sets, is "diverging".
MIN_DECISION_AGREEMENT = 0.99
MIN_SET_AGREEMENT = 0.95
# Positive weights from label frequencies (negatives / positives per class) are capped at this.
MAX_POSITIVE_WEIGHT = 20.0


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float
    threshold: float
    present: bool


@dataclass(frozen=True)
class LabelSet:
    """One image's result: every class with its score and threshold, the present ones first, then by score."""

    labels: list[LabelScore]
    probabilities: np.ndarray  # all classes, in the card's class order
    latency_ms: float

    @property
    def present(self) -> list[LabelScore]:
        return [item for item in self.labels if item.present]


def card_thresholds(card) -> np.ndarray:
    """The per-class thresholds a multi-label card states, or a clear error."""
    values = (card.decoding or {}).get(THRESHOLDS)
    try:
        thresholds = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        thresholds = np.zeros(0)
    if thresholds.shape != (card.num_classes,) or not np.all((thresholds >= 0) & (thresholds <= 1)):
        raise ModelError(f"Model card of {card.ref} states thresholds {values!r}. Expected 'decoding' with "
                         f"'{THRESHOLDS}': one number from 0 to 1 per class ({card.num_classes}).")
    return thresholds


def positive_weights(label_counts, images: int) -> list[float]:
    """Per class, negatives / positives among the training images (capped): rare labels weigh more."""
    counts = np.asarray(label_counts, np.float64)
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, (images - counts) / counts, 1.0)
    return [float(w) for w in np.clip(weights, 1.0, MAX_POSITIVE_WEIGHT)]


class MultiLabelTask(Task):
    name = "multi-label-classification"
    title = "Multi-label classification"
    monitor = "val_map"
    losses = ("asymmetric", "bce", "focal")
    label_sets = True
    # One batch row per image: ``labels`` lists every class (found or not), and the set is the image's answer.
    batch_rows_from = None
    parity_titles = {
        "decision_agreement": "Label decisions agree",
        "set_agreement": "Label sets agree",
        "worst_label_agreement": "Worst label's agreement",
        "max_prob_diff": "Max |Δp|",
        "mean_prob_diff": "Mean |Δp|",
    }

    # -- Modeling and training ------------------------------------------------------------------

    def head(self, features, num_classes: int, dropout: float):
        return dense_head(features, num_classes, dropout, "sigmoid")

    def loss(self, config, train_labels=None):
        from imgrec.tasks import multilabel_losses  # Keras loads only when training

        weights = None
        if config.class_weights and train_labels is not None:
            weights = positive_weights(np.asarray(train_labels).sum(axis=0), len(train_labels))
        if config.loss == "focal":
            return multilabel_losses.focal(config.focal_gamma, weights)
        if config.loss == "bce":
            return multilabel_losses.binary_crossentropy(weights)
        return multilabel_losses.asymmetric(weights)

    def training_metrics(self, num_classes: int) -> list:
        import keras  # Keras loads only when training

        return [keras.metrics.AUC(curve="PR", multi_label=True, num_labels=num_classes, name="map"),
                keras.metrics.BinaryAccuracy(name="binary_accuracy")]

    def check_outputs(self, output_shape: tuple, card) -> str | None:
        problem = class_scores_shape_problem(output_shape, card)
        if problem:
            return problem
        try:
            card_thresholds(card)
        except ModelError as exc:
            return str(exc)
        return None

    # -- Inference -------------------------------------------------------------------------------

    def decode(self, outputs: np.ndarray, card, options: DecodeOptions, latency_ms: float,
               image_sizes: Sequence[tuple[int, int]] | None = None) -> list[LabelSet]:
        thresholds = card_thresholds(card)
        results = []
        for row in np.asarray(outputs, np.float32):
            present = row >= thresholds
            order = sorted(range(len(row)), key=lambda i: (not present[i], -float(row[i])))
            labels = [LabelScore(card.class_names[i], float(row[i]), float(thresholds[i]), bool(present[i]))
                      for i in order]
            results.append(LabelSet(labels, row, latency_ms))
        return results

    def to_json(self, result: LabelSet) -> dict[str, Any]:
        return {"labels": [{"label": item.label, "score": round(item.score, 6), "threshold": round(item.threshold, 6),
                            "present": item.present} for item in result.labels]}

    def summary(self, result: LabelSet) -> str:
        if not result.present:
            return "no label found"
        return ", ".join(f"{item.label} {item.score:.1%}" for item in result.present)

    def log_labels(self, result: LabelSet) -> list[tuple[str, float]]:
        return [(item.label, item.score) for item in result.labels]

    def log_label_set(self, result: LabelSet) -> list[tuple[str, float, float]]:
        return [(item.label, item.score, item.threshold) for item in result.present]

    def verdict(self, result: LabelSet, threshold: float) -> Verdict:
        """Each label has its own threshold from the card; the settings' single-label threshold does not apply."""
        if not result.present:
            best = result.labels[0]
            return Verdict("none", f"No label found: no score reaches its threshold (best: {best.label} "
                                   f"{best.score:.1%}, threshold {best.threshold:.1%}).")
        return Verdict("confident", self.summary(result))

    # -- Explanation -----------------------------------------------------------------------------

    def explanation_target(self, result: LabelSet, card, choice: str | None = None) -> ClassTarget:
        """``choice``: any of the model's labels (present or not); None: the best-scoring label."""
        label = choice if choice is not None else result.labels[0].label
        if label not in card.class_names:
            raise ModelError(f"Unknown label '{label}'. Expected one of the model's {card.num_classes} labels.")
        return ClassTarget(card.class_names.index(label), label)

    # -- Evaluation and export parity -------------------------------------------------------------

    def evaluate(self, y_true, outputs: np.ndarray, class_names, split: str, *,
                 calibration: tuple | None = None, temperature: float = 1.0, thresholds=None):
        """Thresholds: tuned on ``calibration`` (the validation split) when given, else ``thresholds``
        (a card's), else 0.5 for every class."""
        source = "given"
        if calibration is not None and len(calibration[0]):
            val_labels, val_scores = multilabel_metrics.check_shapes(*calibration, class_names)
            thresholds, source = multilabel_metrics.tune_thresholds(val_labels, val_scores), "val"
        elif thresholds is None:
            thresholds = np.full(len(class_names), multilabel_metrics.DEFAULT_THRESHOLD)
            source = "default"
        return multilabel_metrics.build_report(y_true, outputs, class_names, split, thresholds, source)

    def report_from_dict(self, data: dict):
        return multilabel_metrics.MultiLabelReport.from_dict(data)

    def evaluation_options(self, card) -> dict:
        return {"thresholds": card_thresholds(card)}

    def card_decoding(self, report) -> dict:
        return {THRESHOLDS: list(report.thresholds)}

    def parity(self, reference: np.ndarray, candidate: np.ndarray, card) -> ParityJudgement:
        reference = np.asarray(reference, np.float64)
        candidate = np.asarray(candidate, np.float64)
        if candidate.shape != reference.shape:
            return ParityJudgement({}, False, f"export gives shape {candidate.shape}, Keras gives {reference.shape}")
        if not np.all(np.isfinite(candidate)):
            figures = dict(decision_agreement=0.0, set_agreement=0.0, worst_label_agreement=0.0,
                           max_prob_diff=None, mean_prob_diff=None, per_label={})
            return ParityJudgement(figures, False, "outputs are not finite (NaN or infinity)")
        thresholds = card_thresholds(card)
        same = multilabel_metrics.decisions(reference, thresholds) == multilabel_metrics.decisions(candidate, thresholds)
        diff = np.abs(reference - candidate)
        per_label = {name: {"decision_agreement": round(float(same[:, i].mean()), 4),
                            "max_prob_diff": round(float(diff[:, i].max()), 6)}
                     for i, name in enumerate(card.class_names)}
        decision, whole_sets = float(same.mean()), float(same.all(axis=1).mean())
        worst = min(per_label.items(), key=lambda item: item[1]["decision_agreement"])
        figures = dict(decision_agreement=round(decision, 4), set_agreement=round(whole_sets, 4),
                       worst_label_agreement=worst[1]["decision_agreement"], worst_label=worst[0],
                       max_prob_diff=round(float(diff.max()), 6), mean_prob_diff=round(float(diff.mean()), 8),
                       per_label=per_label)
        reasons = []
        if decision < MIN_DECISION_AGREEMENT:
            reasons.append(f"label decisions agree with Keras on {decision:.1%} (below {MIN_DECISION_AGREEMENT:.0%})")
        if whole_sets < MIN_SET_AGREEMENT:
            reasons.append(f"whole label sets agree on {whole_sets:.1%} of images (below {MIN_SET_AGREEMENT:.0%})")
        return ParityJudgement(figures, not reasons, "; ".join(reasons))

    def parity_headline(self, figures: dict) -> str:
        if not figures:
            return ""
        max_diff = figures.get("max_prob_diff")
        return (f"decisions {figures['decision_agreement']:6.1%}  sets {figures['set_agreement']:6.1%}  "
                f"max|dp| {max_diff if max_diff is not None else float('nan'):.3g}")

    def parity_thresholds(self) -> dict[str, float]:
        return {"min_decision_agreement": MIN_DECISION_AGREEMENT, "min_set_agreement": MIN_SET_AGREEMENT}

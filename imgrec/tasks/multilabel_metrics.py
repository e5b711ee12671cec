"""Multi-label metrics with scikit-learn: per-class thresholds tuned for F1, mAP, micro/macro F1, subset
accuracy, Hamming loss, per-class precision/recall/AP, PR curves and label co-occurrence."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from imgrec.core.files import write_atomically
from imgrec.tasks.classification_metrics import EvaluationError

DEFAULT_THRESHOLD = 0.5  # for a class the validation split has no positive image of
PR_CURVE_POINTS = 101  # each class's PR curve, resampled at this many recall levels for the report


def check_shapes(y_true, scores, class_names) -> tuple[np.ndarray, np.ndarray]:
    """Multi-hot labels and scores as arrays of the same (images, classes) shape, or a clear error."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, np.float64)
    if y_true.ndim != 2 or scores.shape != y_true.shape or scores.shape[1] != len(class_names):
        raise EvaluationError(
            f"Got labels of shape {y_true.shape} and scores of shape {scores.shape} for {len(class_names)} classes. "
            "Expected both (images, classes), labels multi-hot."
        )
    return (y_true > 0).astype(np.int8), scores


def tune_thresholds(y_true, scores) -> np.ndarray:
    """Per class, the score threshold maximising that class's F1 on these (validation) images."""
    from sklearn.metrics import precision_recall_curve

    y_true = np.asarray(y_true)
    scores = np.asarray(scores, np.float64)
    thresholds = np.full(y_true.shape[1], DEFAULT_THRESHOLD)
    for c in range(y_true.shape[1]):
        if not y_true[:, c].any():
            continue
        precision, recall, cuts = precision_recall_curve(y_true[:, c], scores[:, c])
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        thresholds[c] = float(cuts[int(np.argmax(f1[:-1]))])  # the last PR point has no threshold
    return thresholds


def decisions(scores, thresholds) -> np.ndarray:
    """Which labels are present: a score at or over its class's threshold."""
    return (np.asarray(scores, np.float64) >= np.asarray(thresholds, np.float64)[None, :]).astype(np.int8)


def _pr_curve(y_true, scores) -> dict:
    """Interpolated precision (the best precision at or beyond each recall level), as lists for JSON."""
    from sklearn.metrics import precision_recall_curve

    if not y_true.any():
        return {"recall": [], "precision": []}
    precision, recall, _ = precision_recall_curve(y_true, scores)
    levels = np.linspace(0.0, 1.0, PR_CURVE_POINTS)
    best = np.maximum.accumulate(precision[::-1])[::-1]  # recall falls along the arrays
    at_level = [float(best[recall >= level].max()) if (recall >= level).any() else 0.0 for level in levels]
    return {"recall": [round(float(v), 4) for v in levels], "precision": [round(v, 4) for v in at_level]}


@dataclass
class MultiLabelReport:
    class_names: list[str]
    split: str
    samples: int
    mean_average_precision: float
    micro_f1: float
    macro_f1: float
    subset_accuracy: float
    hamming_loss: float
    thresholds: list[float]  # per class, in class order (tuned on the validation split)
    per_class: list[dict]  # class, precision, recall, f1, average_precision, threshold, support
    pr_curves: dict = field(default_factory=dict)  # class -> {"recall": [...], "precision": [...]}
    cooccurrence: list[list[int]] = field(default_factory=list)  # images holding both classes (true labels)
    predicted_cooccurrence: list[list[int]] = field(default_factory=list)  # the same for predicted sets
    thresholds_from: str = ""  # the split the thresholds were tuned on

    def summary(self) -> dict:
        """The short form kept in the model card's metrics."""
        return {
            "split": self.split,
            "samples": self.samples,
            "mAP": round(self.mean_average_precision, 5),
            "micro_f1": round(self.micro_f1, 5),
            "macro_f1": round(self.macro_f1, 5),
            "subset_accuracy": round(self.subset_accuracy, 5),
            "hamming_loss": round(self.hamming_loss, 5),
        }

    def headline(self) -> str:
        return (f"mAP {self.mean_average_precision:.4f}, micro F1 {self.micro_f1:.4f}, "
                f"macro F1 {self.macro_f1:.4f}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> MultiLabelReport:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: Path, extra: dict | None = None) -> None:
        write_atomically(Path(path), json.dumps({**self.to_dict(), **(extra or {})}, indent=1).encode())

    def text_tables(self) -> list[str]:
        """Per-class precision, recall, AP and threshold, as text lines."""
        width = max(len(name) for name in self.class_names) + 2
        lines = [f"{'class':<{width}}  thresh  precision  recall     AP  support"]
        lines += [f"{row['class']:<{width}}  {row['threshold']:6.3f}  {row['precision']:9.3f}  {row['recall']:6.3f}  "
                  f"{row['average_precision']:5.3f}  {row['support']:7d}" for row in self.per_class]
        return lines


def build_report(y_true, scores, class_names, split: str, thresholds, thresholds_from: str = "") -> MultiLabelReport:
    """Every metric at the given per-class thresholds (tuned on another split)."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        hamming_loss,
        precision_recall_fscore_support,
    )

    y_true, scores = check_shapes(y_true, scores, class_names)
    thresholds = np.asarray(thresholds, np.float64)
    if thresholds.shape != (len(class_names),):
        raise EvaluationError(f"Got {thresholds.size} thresholds for {len(class_names)} classes. Expected one per class.")
    predicted = decisions(scores, thresholds)
    support = y_true.sum(axis=0)
    present = support > 0
    ap = np.zeros(len(class_names))
    if present.any():
        ap[present] = average_precision_score(y_true[:, present], scores[:, present], average=None)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, predicted, average=None, zero_division=0)
    empty = len(y_true) == 0
    return MultiLabelReport(
        class_names=list(class_names),
        split=split,
        samples=int(len(y_true)),
        # Classes without a positive image in this split have no AP; the mean is over those that do.
        mean_average_precision=float(ap[present].mean()) if present.any() else 0.0,
        micro_f1=0.0 if empty else float(f1_score(y_true, predicted, average="micro", zero_division=0)),
        macro_f1=0.0 if empty else float(f1_score(y_true, predicted, average="macro", zero_division=0)),
        subset_accuracy=0.0 if empty else float(accuracy_score(y_true, predicted)),
        hamming_loss=0.0 if empty else float(hamming_loss(y_true, predicted)),
        thresholds=[float(t) for t in thresholds],  # unrounded: a score equal to its cut stays present
        per_class=[
            {"class": name, "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
             "average_precision": float(ap[i]), "threshold": float(thresholds[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        ],
        pr_curves={name: _pr_curve(y_true[:, i], scores[:, i]) for i, name in enumerate(class_names)},
        cooccurrence=(y_true.T.astype(np.int64) @ y_true.astype(np.int64)).tolist(),
        predicted_cooccurrence=(predicted.T.astype(np.int64) @ predicted.astype(np.int64)).tolist(),
        thresholds_from=thresholds_from,
    )

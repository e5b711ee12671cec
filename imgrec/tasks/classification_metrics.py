"""Single-label classification metrics: accuracy, top-3, F1s, per-class scores, confusion matrix,
calibration (ECE, reliability bins), temperature scaling and the out-of-distribution threshold, on numpy
arrays of labels and probabilities."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from imgrec.core.errors import ImgrecError
from imgrec.core.files import write_atomically

ECE_BINS = 15
MAX_ERRORS_PER_CELL = 64
# The out-of-distribution threshold keeps this share of held-out (in-distribution) images below it.
OOD_KEPT_SHARE = 0.95


class EvaluationError(ImgrecError):
    """Labels and outputs do not fit together for evaluation."""


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def per_class_scores(matrix: np.ndarray) -> dict[str, np.ndarray]:
    tp = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def top_k_accuracy(y_true, probabilities, k: int) -> float:
    probabilities = np.asarray(probabilities)
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == np.asarray(y_true)[:, None], axis=1)))


def calibration(y_true, probabilities, bins: int = ECE_BINS) -> dict:
    """Expected calibration error and the reliability diagram's bins (confidence vs accuracy)."""
    probabilities = np.asarray(probabilities, np.float64)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows, ece, n = [], 0.0, len(confidence)
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi) if lo > 0 else (confidence >= lo) & (confidence <= hi)
        count = int(inside.sum())
        if count:
            acc, conf = float(correct[inside].mean()), float(confidence[inside].mean())
            ece += count / n * abs(acc - conf)
        else:
            acc = conf = None
        rows.append({"lower": round(float(lo), 4), "upper": round(float(hi), 4), "count": count,
                     "accuracy": acc, "confidence": conf})
    return {"ece": float(ece), "bins": rows}


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """Softmax(log p / T): the model outputs probabilities, whose logs are its logits up to a constant."""
    logits = np.log(np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(y_true, probabilities) -> float:
    p = np.asarray(probabilities, np.float64)[np.arange(len(y_true)), np.asarray(y_true)]
    return float(-np.mean(np.log(np.clip(p, 1e-12, 1.0))))


def fit_temperature(y_true, probabilities) -> float:
    """The temperature minimising validation NLL (bounded search over log T)."""
    from scipy.optimize import minimize_scalar

    if len(y_true) == 0:
        return 1.0
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(y_true, apply_temperature(probabilities, float(np.exp(log_t)))),
        bounds=(np.log(0.05), np.log(20.0)), method="bounded",
    )
    return float(np.exp(result.x))


def normalized_entropy(probabilities) -> np.ndarray:
    """Entropy of each row divided by log(classes): 0 when one class takes everything, 1 when all tie.

    The out-of-distribution score: the models end in a softmax, so logit scores (energy, max-logit) are
    gone from their outputs, but how spread the probabilities are is still there."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)
    p = np.atleast_2d(p)
    return -(p * np.log(p)).sum(axis=1) / np.log(max(p.shape[1], 2))


def fit_ood_threshold(probabilities, temperature: float = 1.0) -> float | None:
    """The normalized entropy that ``OOD_KEPT_SHARE`` of these in-distribution images stay below (after
    temperature scaling, as the verdict sees them); None without images."""
    if len(probabilities) == 0:
        return None
    scores = normalized_entropy(apply_temperature(probabilities, temperature))
    return float(np.quantile(scores, OOD_KEPT_SHARE))


@dataclass
class EvaluationReport:
    class_names: list[str]
    split: str
    samples: int
    accuracy: float
    top3_accuracy: float
    macro_f1: float
    weighted_f1: float
    per_class: list[dict]
    confusion: list[list[int]]
    calibration: dict
    temperature: float = 1.0
    calibrated: dict = field(default_factory=dict)  # ECE and NLL after temperature scaling
    errors: dict = field(default_factory=dict)  # "true|pred" -> indices into the split (misclassified)
    nll: float = 0.0
    ood_threshold: float | None = None  # normalized entropy above which an image looks unlike the classes

    def summary(self) -> dict:
        """The short form kept in the model card's metrics."""
        return {
            "split": self.split,
            "samples": self.samples,
            "accuracy": round(self.accuracy, 5),
            "top3_accuracy": round(self.top3_accuracy, 5),
            "macro_f1": round(self.macro_f1, 5),
            "weighted_f1": round(self.weighted_f1, 5),
            "ece": round(self.calibration["ece"], 5),
            "nll": round(self.nll, 5),
            "temperature": round(self.temperature, 5),
            "ece_calibrated": round(self.calibrated.get("ece", self.calibration["ece"]), 5),
            **({} if self.ood_threshold is None else {"ood_threshold": round(self.ood_threshold, 5)}),
        }

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationReport:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path: Path, extra: dict | None = None) -> None:
        write_atomically(Path(path), json.dumps({**self.to_dict(), **(extra or {})}, indent=1).encode())

    @classmethod
    def load(cls, path: Path) -> EvaluationReport:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def misclassified(self, true_class: str, predicted_class: str) -> list[int]:
        return self.errors.get(f"{true_class}|{predicted_class}", [])

    def text_tables(self) -> list[str]:
        """The confusion matrix (columns numbered like the rows) and the reliability bins, as text lines."""
        width = max(5, len(str(max((max(row) for row in self.confusion), default=0))) + 1)
        label = max(len(name) for name in self.class_names) + 4
        lines = ["confusion matrix (rows: true class, columns: predicted class):",
                 " " * label + "".join(f"{index:>{width}}" for index in range(len(self.class_names)))]
        lines += [f"{index:>2}  {name:<{label - 4}}" + "".join(f"{count:>{width}}" for count in row)
                  for index, (name, row) in enumerate(zip(self.class_names, self.confusion))]
        lines.append(f"reliability (ECE {self.calibration['ece']:.3f}): confidence bin, images, mean confidence, accuracy")
        lines += [f"  {b['lower']:.2f}-{b['upper']:.2f}  n {b['count']:>6}  conf {b['confidence']:.3f}  "
                  f"acc {b['accuracy']:.3f}" for b in self.calibration["bins"] if b["count"]]
        return lines


def build_report(y_true, probabilities, class_names, split: str = "test", temperature: float = 1.0,
                 ood_threshold: float | None = None) -> EvaluationReport:
    y_true = np.asarray(y_true, int)
    probabilities = np.asarray(probabilities, np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names) or len(y_true) != len(probabilities):
        raise EvaluationError(
            f"Got probabilities of shape {probabilities.shape} for {len(y_true)} labels and "
            f"{len(class_names)} classes. Expected (labels, classes)."
        )
    k = len(class_names)
    y_pred = probabilities.argmax(axis=1)
    matrix = confusion_matrix(y_true, y_pred, k)
    scores = per_class_scores(matrix)
    support = scores["support"]
    weights = support / max(support.sum(), 1)
    present = support > 0
    errors: dict[str, list[int]] = {}
    for index in np.flatnonzero(y_pred != y_true):
        key = f"{class_names[y_true[index]]}|{class_names[y_pred[index]]}"
        bucket = errors.setdefault(key, [])
        if len(bucket) < MAX_ERRORS_PER_CELL:
            bucket.append(int(index))
    scaled = apply_temperature(probabilities, temperature) if temperature != 1.0 else probabilities
    return EvaluationReport(
        class_names=list(class_names),
        split=split,
        samples=int(len(y_true)),
        accuracy=float(np.mean(y_pred == y_true)) if len(y_true) else 0.0,
        top3_accuracy=top_k_accuracy(y_true, probabilities, 3) if len(y_true) else 0.0,
        macro_f1=float(scores["f1"][present].mean()) if present.any() else 0.0,
        weighted_f1=float(np.sum(scores["f1"] * weights)),
        per_class=[
            {"class": name, "precision": float(scores["precision"][i]), "recall": float(scores["recall"][i]),
             "f1": float(scores["f1"][i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        ],
        confusion=matrix.tolist(),
        calibration=calibration(y_true, probabilities),
        temperature=float(temperature),
        calibrated={**calibration(y_true, scaled), "nll": negative_log_likelihood(y_true, scaled)},
        errors=errors,
        nll=negative_log_likelihood(y_true, probabilities),
        ood_threshold=ood_threshold,
    )

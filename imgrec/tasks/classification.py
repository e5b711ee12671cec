"""Single-label classification: a softmax head, ranked top-k labels, an honest verdict (calibrated, margin,
out-of-distribution), accuracy metrics, top-1/top-5 parity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from imgrec.core.errors import ModelError
from imgrec.tasks import classification_metrics
from imgrec.tasks.base import (
    ClassTarget,
    DecodeOptions,
    ParityJudgement,
    Task,
    Verdict,
    class_scores_shape_problem,
    dense_head,
)

# An export whose top-1 agrees with Keras on fewer held-out images than this is "diverging".
MIN_TOP1_AGREEMENT = 0.97
# ... or whose top-5 sets overlap less than this on average (only checked with more than 5 classes).
MIN_TOP5_OVERLAP = 0.80
# Reported besides: top-1 agreement on the held-out images where Keras itself is at least this sure.
CONFIDENT_SCORE = 0.5
# The verdict: a top class this little ahead of the runner-up (calibrated) is a close call.
MIN_MARGIN = 0.2
# Normalized entropy above which an image looks unlike the model's classes, for cards whose evaluation did
# not fit one (``ood_threshold`` in the card's metrics, see ``classification_metrics.fit_ood_threshold``).
DEFAULT_OOD_THRESHOLD = 0.35


class Prediction(NamedTuple):
    label: str
    score: float


@dataclass(frozen=True)
class Classification:
    """One image's result: the ranked top-k labels and every class's probability."""

    predictions: list[Prediction]
    probabilities: np.ndarray  # all classes, in the card's class order
    latency_ms: float  # this image's share of the batch's inference time
    temperature: float = 1.0  # the card's fitted temperature: probabilities ** (1/T), renormalised, are calibrated
    ood_threshold: float = DEFAULT_OOD_THRESHOLD  # normalized entropy above which it looks out of distribution
    class_names: tuple[str, ...] = ()  # the card's, for naming the runner-up

    @property
    def top(self) -> Prediction:
        return self.predictions[0]

    @property
    def calibrated(self) -> np.ndarray:
        """Every class's calibrated probability (the card's temperature), in the card's class order."""
        return classification_metrics.apply_temperature(self.probabilities[None, :], self.temperature)[0]

    def calibrated_scores(self, predictions: list[Prediction]) -> list[float]:
        """The calibrated probability of each of ``predictions`` (what the verdict judges)."""
        index = {name: i for i, name in enumerate(self.class_names)}
        calibrated = self.calibrated
        return [float(calibrated[index[p.label]]) for p in predictions]


class ClassificationTask(Task):
    name = "image-classification"
    title = "Single-label classification"
    monitor = "val_accuracy"
    losses = ("crossentropy", "focal")
    parity_titles = {
        "top1_agreement": "Top-1 agreement",
        "top5_overlap": "Top-5 overlap",
        "confident_top1_agreement": f"Top-1 agreement (Keras ≥ {CONFIDENT_SCORE:.0%})",
        "max_prob_diff": "Max |Δp|",
        "mean_prob_diff": "Mean |Δp|",
    }

    def head(self, features, num_classes: int, dropout: float):
        return dense_head(features, num_classes, dropout, "softmax")

    def loss(self, config, train_labels=None):
        """Class weights, when asked for, go to Keras' ``fit(class_weight=…)`` instead (see the trainer)."""
        import keras  # Keras loads only when training

        if config.loss == "focal":
            return keras.losses.CategoricalFocalCrossentropy(gamma=config.focal_gamma,
                                                             label_smoothing=config.label_smoothing)
        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)

    def training_metrics(self, num_classes: int) -> list:
        import keras  # Keras loads only when training

        return ["accuracy", keras.metrics.TopKCategoricalAccuracy(k=min(3, num_classes), name="top3")]

    def check_outputs(self, output_shape: tuple, card) -> str | None:
        return class_scores_shape_problem(output_shape, card)

    # -- Inference -------------------------------------------------------------------------------

    def decode(self, outputs: np.ndarray, card, options: DecodeOptions, latency_ms: float,
               image_sizes=None) -> list[Classification]:
        k = max(1, min(int(options.top_k), card.num_classes))
        temperature = float(card.metrics.get("temperature") or 1.0)
        ood_threshold = float(card.metrics.get("ood_threshold") or DEFAULT_OOD_THRESHOLD)
        results = []
        for row in np.asarray(outputs, np.float32):
            order = np.argsort(-row, kind="stable")[:k]
            ranked = [Prediction(card.class_names[i], float(row[i])) for i in order]
            results.append(Classification(ranked, row, latency_ms, temperature, ood_threshold, card.class_names))
        return results

    def to_json(self, result: Classification) -> dict[str, Any]:
        return {"predictions": [{"label": p.label, "score": round(float(p.score), 6)} for p in result.predictions]}

    def summary(self, result: Classification) -> str:
        return ", ".join(f"{p.label} {p.score:.1%}" for p in result.predictions)

    def log_labels(self, result: Classification) -> list[tuple[str, float]]:
        return [(p.label, p.score) for p in result.predictions]

    def verdict(self, result: Classification, threshold: float) -> Verdict:
        """Judged on the calibrated probabilities (the card's temperature): the top one against
        ``threshold``, its margin over the runner-up, and how spread they are (out of distribution?)."""
        calibrated = result.calibrated
        order = np.argsort(-calibrated, kind="stable")
        best = float(calibrated[order[0]])
        second = float(calibrated[order[1]]) if len(order) > 1 else 0.0
        spread = float(classification_metrics.normalized_entropy(calibrated)[0])
        names = result.class_names or tuple(p.label for p in result.predictions)
        label = result.top.label
        runner_up = names[order[1]] if len(order) > 1 and order[1] < len(names) else "the next class"
        figures = {"calibrated": best, "margin": best - second, "entropy": spread, "ood_threshold": result.ood_threshold,
                   "temperature": result.temperature}
        if spread > result.ood_threshold:
            return Verdict("uncertain", f"Outside this model's classes? {label} {best:.1%} (calibrated), but the scores "
                           f"are spread like on unfamiliar images (entropy {spread:.2f} > {result.ood_threshold:.2f}).",
                           out_of_distribution=True, figures=figures)
        if best < threshold:
            return Verdict("uncertain", f"Uncertain: {label} {best:.1%} (calibrated) is below {threshold:.0%}; "
                           f"next {runner_up} {second:.1%}.", figures=figures)
        if best - second < MIN_MARGIN:
            return Verdict("uncertain", f"Close call: {label} {best:.1%} vs {runner_up} {second:.1%} (calibrated).",
                           figures=figures)
        return Verdict("confident", f"{label} {best:.1%} (calibrated), {best - second:.0%} ahead of {runner_up}.",
                       figures=figures)

    def explanation_target(self, result: Classification, card, choice: str | None = None) -> ClassTarget:
        label = choice if choice is not None else result.top.label
        if label not in card.class_names:
            raise ModelError(f"Unknown class '{label}'. Expected one of the model's {card.num_classes} class names.")
        return ClassTarget(card.class_names.index(label), label)

    # -- Evaluation and export parity -------------------------------------------------------------

    def evaluate(self, y_true, outputs: np.ndarray, class_names, split: str, *,
                 calibration: tuple | None = None, temperature: float = 1.0):
        ood_threshold = None
        if calibration is not None and len(calibration[0]):
            temperature = classification_metrics.fit_temperature(*calibration)
            ood_threshold = classification_metrics.fit_ood_threshold(calibration[1], temperature)
        return classification_metrics.build_report(y_true, outputs, class_names, split, temperature, ood_threshold)

    def report_from_dict(self, data: dict):
        return classification_metrics.EvaluationReport.from_dict(data)

    def parity(self, reference: np.ndarray, candidate: np.ndarray, card) -> ParityJudgement:
        reference = np.asarray(reference, np.float64)
        candidate = np.asarray(candidate, np.float64)
        if candidate.shape != reference.shape:
            return ParityJudgement({}, False, f"export gives shape {candidate.shape}, Keras gives {reference.shape}")
        confident = reference.max(1) >= CONFIDENT_SCORE
        if not np.all(np.isfinite(candidate)):
            figures = dict(top1_agreement=0.0, top5_overlap=0.0, confident_top1_agreement=0.0,
                           confident_images=int(confident.sum()), max_prob_diff=None, mean_prob_diff=None)
            return ParityJudgement(figures, False, "outputs are not finite (NaN or infinity)")
        k = min(5, reference.shape[1])
        top1 = float(np.mean(reference.argmax(1) == candidate.argmax(1)))
        ref_top = np.argsort(-reference, axis=1, kind="stable")[:, :k]
        exp_top = np.argsort(-candidate, axis=1, kind="stable")[:, :k]
        overlap = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_top, exp_top, strict=True)]))
        confident_top1 = (float(np.mean(reference.argmax(1)[confident] == candidate.argmax(1)[confident]))
                          if confident.any() else None)
        diff = np.abs(reference - candidate)
        figures = dict(top1_agreement=round(top1, 4), top5_overlap=round(overlap, 4),
                       confident_top1_agreement=None if confident_top1 is None else round(confident_top1, 4),
                       confident_images=int(confident.sum()),
                       max_prob_diff=round(float(diff.max()), 6), mean_prob_diff=round(float(diff.mean()), 8))
        reasons = []
        if top1 < MIN_TOP1_AGREEMENT:
            reasons.append(f"top-1 agrees with Keras on {top1:.1%} of held-out images (below {MIN_TOP1_AGREEMENT:.0%})")
        if card.num_classes > 5 and overlap < MIN_TOP5_OVERLAP:
            reasons.append(f"top-5 overlap {overlap:.1%} (below {MIN_TOP5_OVERLAP:.0%})")
        return ParityJudgement(figures, not reasons, "; ".join(reasons))

    def parity_headline(self, figures: dict) -> str:
        """The figures of one export on a terminal line."""
        if not figures:
            return ""
        max_diff = figures.get("max_prob_diff")
        return (f"top-1 {figures['top1_agreement']:6.1%}  top-5 {figures['top5_overlap']:6.1%}  "
                f"max|dp| {max_diff if max_diff is not None else float('nan'):.3g}")

    def parity_thresholds(self) -> dict[str, float]:
        return {"min_top1_agreement": MIN_TOP1_AGREEMENT, "min_top5_overlap": MIN_TOP5_OVERLAP}

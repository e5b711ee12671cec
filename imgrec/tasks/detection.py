"""Object detection: decoded YOLO outputs → thresholded, per-class NMS'd boxes in the original image's pixels;
box-level Grad-CAM targets; export parity by boxes matched at IoU ≥ 0.5. Detectors are pretrained or imported,
never trained here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from imgrec.core.errors import ModelError
from imgrec.tasks.base import BoxTarget, DecodeOptions, ParityJudgement, Task, Verdict
from imgrec.tasks.detection_metrics import DetectionReport

# The card's ``decoding`` keys and the defaults a detector card must state (checked on registration).
SCORE_THRESHOLD, IOU_THRESHOLD, MAX_DETECTIONS, HEAD_SPEC = "score_threshold", "iou_threshold", "max_detections", "yolo"
MAX_DETECTIONS_LIMIT = 1000  # the most a caller may ask for
# Export parity: boxes match when IoU ≥ MATCH_IOU; an export is "diverging" below these figures.
MATCH_IOU = 0.5
MIN_MATCHED_SHARE = 0.9
MIN_LABEL_AGREEMENT = 0.95
MIN_MEAN_IOU = 0.85
NOT_TRAINABLE = ("Detection training is not supported: imgrec serves pretrained or imported detectors only "
                 "(`imgrec import darknet CFG WEIGHTS --names FILE`).")


@dataclass(frozen=True)
class Detection:
    label: str
    class_index: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the original image's pixels
    output_index: int  # its row in the decoded model output (for BoxTarget)


@dataclass(frozen=True)
class Detections:
    """One image's result."""

    detections: list[Detection]  # best score first, after per-class NMS
    width: int  # the original image's size
    height: int
    latency_ms: float
    score_threshold: float = 0.0  # the threshold the detections passed (for the words of ``verdict``)


def decoding_defaults(card) -> tuple[float, float, int]:
    """(score threshold, IoU threshold, max detections) from a detector's card."""
    try:
        return (float(card.decoding[SCORE_THRESHOLD]), float(card.decoding[IOU_THRESHOLD]),
                int(card.decoding[MAX_DETECTIONS]))
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"Model card of {card.ref} lacks its detection defaults. Expected 'decoding' with "
                         f"{SCORE_THRESHOLD}, {IOU_THRESHOLD} and {MAX_DETECTIONS}.") from None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), x1 y1 x2 y2."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


class DetectionTask(Task):
    name = "detection"
    title = "Object detection"
    monitor = "val_map"
    losses = ("none",)
    batch_rows_from = "detections"  # one batch row per box; an image with none keeps one row of its own
    parity_titles = {
        "matched_share": "Boxes matched (IoU ≥ 0.5)",
        "mean_iou": "Mean IoU",
        "label_agreement": "Label agreement",
        "max_score_diff": "Max |Δscore|",
        "mean_score_diff": "Mean |Δscore|",
    }

    # -- Modeling and training: not here ---------------------------------------------------------

    def head(self, features, num_classes: int, dropout: float):
        raise ModelError(NOT_TRAINABLE)

    def loss(self, config, train_labels=None):
        raise ModelError(NOT_TRAINABLE)

    def training_metrics(self, num_classes: int) -> list:
        raise ModelError(NOT_TRAINABLE)

    def check_outputs(self, output_shape: tuple, card) -> str | None:
        if len(output_shape) != 3:
            return f"Model {card.ref} gives outputs of shape {output_shape}. Expected (batch, boxes, 4 + classes)."
        if output_shape[-1] != 4 + card.num_classes:
            return (f"Model {card.ref} gives {output_shape[-1]} values per box, but its card lists "
                    f"{card.num_classes} class names. Expected {4 + card.num_classes} (4 box + classes).")
        return None

    # -- Inference -------------------------------------------------------------------------------

    def check_options(self, options: DecodeOptions, card) -> str | None:
        """Why ``options`` cannot be used with this detector, or None (a user's mistake: 422 / exit 2)."""
        for field, value in (("score_threshold", options.score_threshold), ("iou_threshold", options.iou_threshold)):
            if value is not None and not (0 < value <= 1):
                return f"{field}={value!r}. Expected a number in (0, 1]."
        if options.max_detections is not None and not (1 <= options.max_detections <= MAX_DETECTIONS_LIMIT):
            return f"max_detections={options.max_detections!r}. Expected an integer from 1 to {MAX_DETECTIONS_LIMIT}."
        if options.classes is not None:
            examples = f"names such as {', '.join(card.class_names[:5])}"
            if not options.classes:
                return f"classes is empty. Expected one or more of the class names of {card.ref}, {examples}."
            unknown = [c for c in options.classes if c not in card.class_names]
            if unknown:
                return (f"classes: {', '.join(repr(c) for c in unknown)} is not among the {card.num_classes} "
                        f"classes of {card.ref}. Expected {examples}.")
        return None

    def decode(self, outputs: np.ndarray, card, options: DecodeOptions, latency_ms: float,
               image_sizes=None) -> list[Detections]:
        import cv2  # OpenCV loads only when boxes are decoded

        problem = self.check_options(options, card)
        if problem:
            raise ModelError(problem)
        default_score, default_iou, default_max = decoding_defaults(card)
        score_threshold = default_score if options.score_threshold is None else float(options.score_threshold)
        iou_threshold = default_iou if options.iou_threshold is None else float(options.iou_threshold)
        max_detections = default_max if options.max_detections is None else int(options.max_detections)
        wanted = (np.arange(card.num_classes) if options.classes is None
                  else np.array(sorted({card.class_names.index(c) for c in options.classes})))
        outputs = np.asarray(outputs, np.float32)
        sizes = list(image_sizes) if image_sizes is not None else [card.input_size] * len(outputs)
        results = []
        for rows, (height, width) in zip(outputs, sizes, strict=True):
            scale = np.array([width, height, width, height], np.float32)
            boxes = np.clip(rows[:, :4], 0, 1) * scale
            scores = rows[:, 4:][:, wanted]
            # A row may give several classes (Darknet's rule); each is a candidate of its own.
            row_index, column = np.nonzero(np.nan_to_num(scores, nan=0.0) >= score_threshold)
            class_index = wanted[column]
            candidate_scores = scores[row_index, column]
            candidates = boxes[row_index]
            if len(row_index):
                xywh = np.column_stack([candidates[:, :2], candidates[:, 2:] - candidates[:, :2]]).astype(np.float64)
                kept = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.tolist(), candidate_scores.tolist(),
                                                          class_index.tolist(), score_threshold,
                                                          iou_threshold), int).reshape(-1)
                kept = kept[np.argsort(-candidate_scores[kept], kind="stable")][:max_detections]
            else:
                kept = np.zeros(0, int)
            detections = [Detection(card.class_names[class_index[i]], int(class_index[i]), float(candidate_scores[i]),
                                    tuple(float(v) for v in candidates[i]), int(row_index[i])) for i in kept]
            results.append(Detections(detections, int(width), int(height), latency_ms, score_threshold))
        return results

    def to_json(self, result: Detections) -> dict[str, Any]:
        return {"detections": [{"label": d.label, "score": round(d.score, 6), "box": [round(v, 2) for v in d.box]}
                               for d in result.detections],
                "image": {"width": result.width, "height": result.height}}

    def summary(self, result: Detections) -> str:
        if not result.detections:
            return f"no objects with a score of at least {result.score_threshold:.0%}"
        counts = Counter(d.label for d in result.detections)
        found = ", ".join(f"{n} {label}" for label, n in counts.most_common())
        best = ", ".join(f"{d.label} {d.score:.1%}" for d in result.detections[:5])
        return f"{len(result.detections)} object{'s' * (len(result.detections) != 1)} ({found}): {best}"

    def log_labels(self, result: Detections) -> list[tuple[str, float]]:
        return [(d.label, d.score) for d in result.detections]

    def log_boxes(self, result: Detections) -> list[tuple[str, float, float, float, float, float]]:
        return [(d.label, d.score, *d.box) for d in result.detections]

    def verdict(self, result: Detections, threshold: float) -> Verdict:
        if not result.detections:
            return Verdict("none", f"No objects found with a score of at least {result.score_threshold:.0%}.")
        best = result.detections[0]
        if best.score < threshold:
            return Verdict("uncertain", f"Uncertain: the best detection ({best.label} {best.score:.1%}) "
                                        f"is below {threshold:.0%}.")
        return Verdict("confident", self.summary(result))

    def explanation_target(self, result: Detections, card, choice: str | None = None) -> BoxTarget:
        """``choice``: a detection's position in ``result.detections`` ("0" is the best), or a label (its best
        detection); None: the best detection."""
        if not result.detections:
            raise ModelError("Nothing was detected, so there is no box to explain. Lower the score threshold.")
        if choice is None:
            chosen = result.detections[0]
        elif str(choice).isdigit():
            if int(choice) >= len(result.detections):
                raise ModelError(f"Detection {choice} does not exist. Expected 0 to {len(result.detections) - 1}.")
            chosen = result.detections[int(choice)]
        else:
            matching = [d for d in result.detections if d.label == choice]
            if not matching:
                raise ModelError(f"No '{choice}' was detected. Expected one of: "
                                 f"{', '.join(sorted({d.label for d in result.detections}))}.")
            chosen = matching[0]
        return BoxTarget(chosen.output_index, chosen.class_index, chosen.label)

    # -- Evaluation and export parity -------------------------------------------------------------

    def evaluate(self, y_true, outputs: np.ndarray, class_names, split: str, *,
                 calibration: tuple | None = None, temperature: float = 1.0):
        raise ModelError("A detector is evaluated on a detection dataset: use `imgrec evaluate MODEL --dataset PATH` "
                         "(COCO JSON, Pascal VOC XML or YOLO txt).")

    def report_from_dict(self, data: dict):
        """The report ``imgrec evaluate`` saved beside the detector (``DETECTION_REPORT``)."""
        return DetectionReport.from_dict(data)

    def parity(self, reference: np.ndarray, candidate: np.ndarray, card) -> ParityJudgement:
        """Decode both with the card's defaults and match boxes per image (IoU ≥ 0.5, best assignment):
        matched share = matched / the larger of the two box counts, so missing and extra boxes both count."""
        from scipy.optimize import linear_sum_assignment  # SciPy loads only to judge an export

        reference = np.asarray(reference, np.float32)
        candidate = np.asarray(candidate, np.float32)
        if candidate.shape != reference.shape:
            return ParityJudgement({}, False, f"export gives shape {candidate.shape}, Keras gives {reference.shape}")
        if not np.all(np.isfinite(candidate)):
            return ParityJudgement(dict(matched_share=0.0, mean_iou=None, label_agreement=None, max_score_diff=None,
                                        mean_score_diff=None, reference_boxes=None),
                                   False, "outputs are not finite (NaN or infinity)")
        options = DecodeOptions()
        expected, got = self.decode(reference, card, options, 0.0), self.decode(candidate, card, options, 0.0)
        matched = compared = 0
        ious, same_label, score_diffs = [], [], []
        for ref, cand in zip(expected, got, strict=True):
            compared += max(len(ref.detections), len(cand.detections))
            if not ref.detections or not cand.detections:
                continue
            iou = box_iou([d.box for d in ref.detections], [d.box for d in cand.detections])
            for i, j in zip(*linear_sum_assignment(-iou), strict=True):
                if iou[i, j] >= MATCH_IOU:
                    matched += 1
                    ious.append(iou[i, j])
                    same_label.append(ref.detections[i].label == cand.detections[j].label)
                    score_diffs.append(abs(ref.detections[i].score - cand.detections[j].score))
        share = matched / compared if compared else 1.0
        mean_iou = float(np.mean(ious)) if ious else None
        agreement = float(np.mean(same_label)) if same_label else None
        figures = dict(matched_share=round(share, 4), mean_iou=None if mean_iou is None else round(mean_iou, 4),
                       label_agreement=None if agreement is None else round(agreement, 4),
                       max_score_diff=round(float(max(score_diffs)), 6) if score_diffs else None,
                       mean_score_diff=round(float(np.mean(score_diffs)), 6) if score_diffs else None,
                       reference_boxes=sum(len(r.detections) for r in expected))
        reasons = []
        if not figures["reference_boxes"]:
            reasons.append("Keras finds no boxes on the held-out images, so box agreement cannot be judged")
        if share < MIN_MATCHED_SHARE:
            reasons.append(f"{share:.1%} of boxes match Keras's at IoU ≥ {MATCH_IOU} (below {MIN_MATCHED_SHARE:.0%})")
        if agreement is not None and agreement < MIN_LABEL_AGREEMENT:
            reasons.append(f"labels agree on {agreement:.1%} of matched boxes (below {MIN_LABEL_AGREEMENT:.0%})")
        if mean_iou is not None and mean_iou < MIN_MEAN_IOU:
            reasons.append(f"mean IoU of matched boxes {mean_iou:.3f} (below {MIN_MEAN_IOU})")
        return ParityJudgement(figures, not reasons, "; ".join(reasons))

    def parity_headline(self, figures: dict) -> str:
        if not figures:
            return ""

        def shown(key, fmt):
            return format(figures[key], fmt) if figures.get(key) is not None else "n/a"

        return (f"matched {shown('matched_share', '6.1%')}  IoU {shown('mean_iou', '.3f')}  "
                f"labels {shown('label_agreement', '6.1%')}  max|Δs| {shown('max_score_diff', '.3g')}")

    def parity_thresholds(self) -> dict[str, float]:
        return {"match_iou": MATCH_IOU, "min_matched_share": MIN_MATCHED_SHARE,
                "min_label_agreement": MIN_LABEL_AGREEMENT, "min_mean_iou": MIN_MEAN_IOU}

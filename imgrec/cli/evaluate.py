"""``imgrec evaluate``: a classifier on a dataset split, or a detector on a COCO/VOC/YOLO dataset (pycocotools)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imgrec.cli.args import EXIT_OK, positive_int
from imgrec.core.refs import ModelRef
from imgrec.core.settings import Settings
from imgrec.datasets.multilabel import FORMATS as LABEL_SET_FORMATS
from imgrec.inference.detection_evaluation import DEFAULT_EVALUATION_THRESHOLD, evaluate_registered_detector
from imgrec.registry import catalog
from imgrec.tasks.detection import DetectionTask
from imgrec.tasks.detection_metrics import DetectionReport
from imgrec.tasks.multilabel_metrics import MultiLabelReport
from imgrec.training.evaluation import evaluate_registered


def add_parser(commands) -> None:
    evaluate = commands.add_parser("evaluate", help="evaluate a registered model on a dataset")
    evaluate.add_argument("model", metavar="MODEL", help="name or name@version")
    evaluate.add_argument("--dataset", required=True,
                          help="classifier: cifar10, fashion_mnist or a folder; detector: a COCO .json, VOC or YOLO folder")
    evaluate.add_argument("--json", action="store_true", help="the full report as JSON")
    classifier = evaluate.add_argument_group("classifiers")
    classifier.add_argument("--split", default="test", choices=("train", "val", "test"))
    classifier.add_argument("--limit-per-class", type=positive_int, help="evaluate on at most N images per class")
    detector = evaluate.add_argument_group("detectors")
    detector.add_argument("--format", choices=LABEL_SET_FORMATS,
                          help="the dataset's layout (default: detected; multi-label: the training run's; csv: multi-label only)")
    detector.add_argument("--class-map", type=Path, metavar="FILE",
                          help='JSON object renaming the dataset\'s classes, e.g. {"tvmonitor": "tv"}')
    detector.add_argument("--score-threshold", type=_fraction, default=DEFAULT_EVALUATION_THRESHOLD,
                          help=f"lowest score a box needs (default {DEFAULT_EVALUATION_THRESHOLD})")
    detector.add_argument("--best-class-only", action="store_true",
                          help="each box gives only its best class (default: every class over the threshold)")
    detector.add_argument("--output", type=Path, metavar="FILE",
                          help="where the report goes (default: detection_report.json beside the model)")
    evaluate.set_defaults(handler=run)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number. Expected a score in (0, 1].") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range. Expected a score in (0, 1].")
    return value


def run(args, settings: Settings) -> int:
    ref = ModelRef.parse(args.model)
    card = catalog.load_card(ref.name, ref.version, settings)
    # Detection datasets hold boxes, not a class per image: the task's own evaluation cannot take them.
    if card.task == DetectionTask.name:
        return run_detector(args, settings)
    return run_classifier(args, settings)


def run_detector(args, settings: Settings) -> int:
    report, path = evaluate_registered_detector(
        args.model, args.dataset, settings, format=args.format, class_map=args.class_map,
        score_threshold=args.score_threshold, best_class_only=args.best_class_only, output=args.output,
        progress=lambda done, total: print(f"{done}/{total} images", file=sys.stderr, flush=True))
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print("\n".join(detection_report_lines(report)))
        print(f"Report written to {path}")
    return EXIT_OK


def detection_report_lines(report: DetectionReport) -> list[str]:
    lines = [f"{report.model} on {report.dataset} ({report.images} images, score ≥ {report.score_threshold}): "
             f"mAP@[.5:.95] {report.map_50_95:.3f}, mAP@0.5 {report.map_50:.3f}, mAP@0.75 {report.map_75:.3f}"]
    lines += [f"  {row.label:>16}  AP {_shown(row.ap)}  AP50 {_shown(row.ap50)}  boxes {row.ground_truth}  "
              f"detections {row.detections}" for row in report.per_class]
    lines += [f"note: {note}" for note in report.notes]
    return lines


def _shown(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def run_classifier(args, settings: Settings) -> int:
    report = evaluate_registered(args.model, args.dataset, args.split, settings, args.limit_per_class,
                                 dataset_format=args.format)
    if args.json:
        print(json.dumps(report.to_dict()))
        return EXIT_OK
    if isinstance(report, MultiLabelReport):
        print(f"{args.model} on {args.dataset}/{args.split} ({report.samples} images): {report.headline()}, "
              f"subset accuracy {report.subset_accuracy:.2%}, Hamming loss {report.hamming_loss:.4f}")
        print("\n".join(report.text_tables()))
        return EXIT_OK
    summary = report.summary()
    print(f"{args.model} on {args.dataset}/{args.split} ({report.samples} images): accuracy {report.accuracy:.2%}, "
          f"top-3 {report.top3_accuracy:.2%}, macro F1 {report.macro_f1:.3f}, weighted F1 {report.weighted_f1:.3f}, "
          f"ECE {summary['ece']:.3f} (T={summary['temperature']:.2f}: {summary['ece_calibrated']:.3f})")
    for row in report.per_class:
        print(f"  {row['class']:>16}  P {row['precision']:.3f}  R {row['recall']:.3f}  F1 {row['f1']:.3f}  "
              f"n {row['support']}")
    print("\n".join(report.text_tables()))
    return EXIT_OK

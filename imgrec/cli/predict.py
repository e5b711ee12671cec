"""``imgrec predict``: predict image files, print one line per file, log the results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from imgrec.cli.args import EXIT_OK, EXIT_SOME_FAILED, positive_int
from imgrec.core.settings import Settings
from imgrec.inference.predictor import Predictor
from imgrec.inference.runtimes import MAX_BATCH
from imgrec.inference.service import PredictionLog, decode_options, read_files, serve_uploads
from imgrec.registry import catalog


def add_parser(commands) -> None:
    predict = commands.add_parser("predict", help="predict image files")
    predict.add_argument("files", nargs="+", type=Path, metavar="FILE")
    predict.add_argument("--model", help="model name (default: the active model)")
    predict.add_argument("--version", help="model version (default: the latest)")
    predict.add_argument("--top-k", type=positive_int, help="how many labels per file (default: IMGREC_DEFAULT_TOP_K)")
    predict.add_argument("--score-threshold", type=float, metavar="S",
                         help="detectors: lowest score kept, in (0, 1] (default: the model card's)")
    predict.add_argument("--iou-threshold", type=float, metavar="T",
                         help="detectors: IoU above which NMS drops a box of the same class (default: the card's)")
    predict.add_argument("--max-detections", type=positive_int, metavar="N",
                         help="detectors: most boxes per image (default: the card's)")
    predict.add_argument("--classes", action="append", metavar="NAMES",
                         help="detectors: comma-separated class names to keep (default: all)")
    predict.add_argument("--json", action="store_true", help="one JSON object per line per file (as the API's)")
    predict.add_argument("--no-log", action="store_true", help="do not write the predictions to the log")
    predict.set_defaults(handler=run)


def run(args, settings: Settings) -> int:
    # Options are checked against the card before the model loads: a typo costs no load time.
    options = decode_options(catalog.load_card(args.model, args.version, settings), top_k=settings.default_top_k if args.top_k is None else args.top_k,
                             score_threshold=args.score_threshold, iou_threshold=args.iou_threshold,
                             max_detections=args.max_detections, classes=args.classes)
    predictor = Predictor.load(args.model, args.version, settings)
    prediction_log = None if args.no_log else PredictionLog(settings, serving=False)
    failures = 0
    warnings_shown = set()  # an unreachable log would say the same for every file: say it once
    # Chunks keep memory bounded for long file lists while still batching inference.
    for start in range(0, len(args.files), MAX_BATCH):
        uploads = read_files(args.files[start : start + MAX_BATCH], predictor.card, settings)
        for outcome in serve_uploads(predictor, uploads, options, settings, prediction_log, source="cli"):
            failures += not outcome.ok
            if args.json:
                print(json.dumps(outcome.to_json()), flush=True)
            elif outcome.ok:
                print(f"{outcome.upload.filename}: {predictor.task.summary(outcome.result)}", flush=True)
            else:
                print(f"{outcome.upload.filename}: error: {outcome.error}", file=sys.stderr, flush=True)
            if outcome.log_warning and outcome.log_warning not in warnings_shown:
                warnings_shown.add(outcome.log_warning)
                print(f"warning: {outcome.log_warning}", file=sys.stderr)
    if prediction_log is not None:  # records an earlier run (or this one) spooled, while the database answers
        prediction_log.replay_now(settings.log_timeout_s)
    return EXIT_SOME_FAILED if failures else EXIT_OK

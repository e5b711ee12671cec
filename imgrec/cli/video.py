"""``imgrec video``: every Nth frame of a video file predicted, one line per frame, optionally an annotated MP4."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from imgrec.cli.args import EXIT_OK, EXIT_SOME_FAILED, positive_int
from imgrec.core.settings import Settings
from imgrec.inference.predictor import Predictor
from imgrec.inference.service import INVALID_IMAGE, UNSUPPORTED_FORMAT, PredictionLog, decode_options
from imgrec.registry import catalog
from imgrec.video.decode import UnsupportedVideoError, VideoError, open_video
from imgrec.video.process import process_video


def add_parser(commands) -> None:
    video = commands.add_parser("video", help="predict the frames of a video file")
    video.add_argument("file", type=Path, metavar="FILE")
    video.add_argument("--model", help="model name (default: the active model)")
    video.add_argument("--version", help="model version (default: the latest)")
    video.add_argument("--every", type=positive_int, default=1, metavar="N", help="predict every Nth frame (default: 1)")
    video.add_argument("--top-k", type=positive_int, help="how many labels per frame (default: IMGREC_DEFAULT_TOP_K)")
    video.add_argument("--score-threshold", type=float, metavar="S",
                       help="detectors: lowest score kept, in (0, 1] (default: the model card's)")
    video.add_argument("--classes", action="append", metavar="NAMES",
                       help="detectors: comma-separated class names to keep (default: all)")
    video.add_argument("--output", type=Path, metavar="ANNOTATED.mp4", help="write the annotated video here")
    video.add_argument("--json", action="store_true", help='one JSON object per frame: {"frame", "time_s", ...}')
    video.add_argument("--no-log", action="store_true", help="do not write the frames to the log")
    video.set_defaults(handler=run)


def run(args, settings: Settings) -> int:
    options = decode_options(catalog.load_card(args.model, args.version, settings),
                             top_k=settings.default_top_k if args.top_k is None else args.top_k,
                             score_threshold=args.score_threshold, classes=args.classes)
    try:
        video = open_video(args.file, settings)
    except VideoError as exc:  # the file's own problem: as `predict` does with a bad file
        return _refused(args, exc)
    predictor = Predictor.load(args.model, args.version, settings)
    prediction_log = None if args.no_log else PredictionLog(settings, serving=False)
    warnings_shown = set()
    try:
        with video:
            for item in process_video(predictor, video, options, every=args.every, output=args.output,
                                      prediction_log=prediction_log, filename=str(args.file)):
                if args.json:
                    print(json.dumps(item.to_json()), flush=True)
                else:
                    print(f"frame {item.index} ({item.time_s:.2f} s): {predictor.task.summary(item.result)}", flush=True)
                if item.log_warning and item.log_warning not in warnings_shown:
                    warnings_shown.add(item.log_warning)
                    print(f"warning: {item.log_warning}", file=sys.stderr)
    except VideoError as exc:  # broken part way: the lines so far stand, no annotated file is left
        return _refused(args, exc)
    if prediction_log is not None:
        prediction_log.replay_now(settings.log_timeout_s)
    return EXIT_OK


def _refused(args, exc: VideoError) -> int:
    if args.json:
        code, status = (UNSUPPORTED_FORMAT, 415) if isinstance(exc, UnsupportedVideoError) else (INVALID_IMAGE, 422)
        print(json.dumps({"filename": str(args.file), "error": code, "detail": str(exc), "status": status}), flush=True)
    else:
        print(f"{args.file}: error: {exc}", file=sys.stderr, flush=True)
    return EXIT_SOME_FAILED

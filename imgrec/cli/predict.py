"""``imgrec predict``: classify image files, print one line per file, log the predictions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from imgrec.cli.args import EXIT_OK, EXIT_SOME_FAILED, positive_int
from imgrec.core.errors import ImgrecError
from imgrec.core.images import read_image_file
from imgrec.core.settings import Settings
from imgrec.inference.predictor import Predictor
from imgrec.inference.runtimes import MAX_BATCH
from imgrec.inference.service import Upload, classify, log_classified


def add_parser(commands) -> None:
    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("files", nargs="+", type=Path, metavar="FILE")
    predict.add_argument("--model", help="model name (default: the active model)")
    predict.add_argument("--version", help="model version (default: the latest)")
    predict.add_argument("--top-k", type=positive_int, help="how many labels per file (default: IMGREC_DEFAULT_TOP_K)")
    predict.add_argument("--json", action="store_true", help="one JSON object per line per file")
    predict.add_argument("--no-log", action="store_true", help="do not write the predictions to the log")
    predict.set_defaults(handler=run)


def run(args, settings: Settings) -> int:
    top_k = settings.default_top_k if args.top_k is None else args.top_k
    predictor = Predictor.load(args.model, args.version, settings)
    store = None if args.no_log else _store_or_warning(settings)
    model_info = {"name": predictor.card.name, "version": predictor.card.version}
    failures = 0
    # Chunks keep memory bounded for long file lists while still batching inference.
    for start in range(0, len(args.files), MAX_BATCH):
        paths = args.files[start : start + MAX_BATCH]
        uploads, unreadable = [], {}
        for path in paths:
            try:
                uploads.append(Upload(str(path), read_image_file(path, settings.max_upload_bytes)))
            except ImgrecError as exc:
                unreadable[path] = exc
        results = iter(classify(predictor, uploads, top_k, settings))
        for path in paths:
            item = None if path in unreadable else next(results)
            if item is None or not item.ok:
                failures += 1
                _emit_error(args, path, unreadable.get(path) or item.error)
            else:
                _emit_predictions(args, path, model_info, item.result.predictions)
                if store is not None:
                    log_classified(store, item, source="cli", session_id=None, settings=settings)
                    if item.log_warning:
                        print(f"warning: {item.log_warning}", file=sys.stderr)
    return EXIT_SOME_FAILED if failures else EXIT_OK


def _store_or_warning(settings: Settings):
    """The prediction log, or None with a warning: a broken log must not cost the user the predictions."""
    from imgrec.predlog.store import open_store  # SQLAlchemy loads only when the predictions are logged

    try:
        return open_store(settings)
    except ImgrecError as exc:
        print(f"warning: predictions will not be logged: {exc}", file=sys.stderr)
        return None


def _emit_predictions(args, path: Path, model_info: dict, predictions) -> None:
    if args.json:
        ranked = [{"label": p.label, "score": round(p.score, 6)} for p in predictions]
        print(json.dumps({"file": str(path), "model": model_info, "predictions": ranked}), flush=True)
    else:
        ranked = ", ".join(f"{p.label} {p.score:.1%}" for p in predictions)
        print(f"{path}: {ranked}", flush=True)


def _emit_error(args, path: Path, message) -> None:
    if args.json:
        print(json.dumps({"file": str(path), "error": str(message)}), flush=True)
    else:
        print(f"{path}: error: {message}", file=sys.stderr, flush=True)

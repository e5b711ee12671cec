"""``python -m imgrec``: the command-line face of imgrec. Each command only calls the package."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from imgrec.core.settings import get_settings
from imgrec.core.errors import ImgrecError
from imgrec.registry.exports import FORMATS as EXPORT_FORMATS

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR = 0, 1, 2
RECENT_DAYS_SHOWN = 7  # `imgrec stats` text output; --json has every day


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ImgrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `imgrec runs | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imgrec", description="imgrec: image-recognition workbench")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("files", nargs="+", type=Path, metavar="FILE")
    predict.add_argument("--model", help="model name (default: the active model)")
    predict.add_argument("--version", help="model version (default: the latest)")
    predict.add_argument("--top-k", type=_positive_int, default=get_settings().default_top_k)
    predict.add_argument("--json", action="store_true", help="one JSON object per line per file")
    predict.add_argument("--no-log", action="store_true", help="do not write the predictions to the log")
    predict.set_defaults(handler=_predict)

    models = commands.add_parser("models", help="list the available models")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=_models)

    init = commands.add_parser("init", help="create data/ and register the default ImageNet model")
    init.set_defaults(handler=_init)

    prune = commands.add_parser("prune", help="delete kept uploads older than the retention period")
    prune.add_argument("--days", type=_non_negative_float, default=get_settings().upload_retention_days,
                       help="age in days (default: IMGREC_UPLOAD_RETENTION_DAYS)")
    prune.set_defaults(handler=_prune)

    serve = commands.add_parser("serve", help="run the REST API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=_positive_int, default=8000)
    serve.add_argument("--workers", type=_positive_int, default=1, help="processes, each with its own model")
    serve.set_defaults(handler=_serve)

    export = commands.add_parser("export", help="export a model (SavedModel, TFLite, ONNX) with a parity report")
    export.add_argument("model", metavar="MODEL", help="model name")
    export.add_argument("--version", help="model version (default: the latest)")
    export.add_argument("--formats", nargs="+", default=["all"], metavar="FORMAT",
                        help="any of: " + ", ".join(EXPORT_FORMATS) + " (default: all)")
    export.set_defaults(handler=_export)

    log_export = commands.add_parser("log-export", help="write the prediction log (filtered) to a CSV or Parquet file")
    log_export.add_argument("output", type=Path, metavar="FILE", help="the file to write: .csv or .parquet")
    log_export.add_argument("--from", dest="date_from", type=_iso_date, help="first UTC day, YYYY-MM-DD")
    log_export.add_argument("--to", dest="date_to", type=_iso_date, help="last UTC day (included), YYYY-MM-DD")
    log_export.add_argument("--model", action="append", default=[], help="name or name@version (repeatable)")
    log_export.add_argument("--label", action="append", default=[], help="top-1 label (repeatable)")
    log_export.add_argument("--source", action="append", default=[], help="app, api or cli (repeatable)")
    log_export.set_defaults(handler=_log_export)

    stats = commands.add_parser("stats", help="aggregates over the prediction log (as GET /stats)")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=_stats)
    _add_training_commands(commands)
    return parser


def _at_least(minimum: int, parse: type, noun: str):
    """An argparse type: ``parse(text)``, refused with a clear message unless it is ``minimum`` or more."""

    def parse_argument(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {noun}. Expected {minimum} or more.") from None
        if not value >= minimum:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{text} is out of range. Expected {minimum} or more.")
        return value

    return parse_argument


_positive_int = _at_least(1, int, "a whole number")
_non_negative_float = _at_least(0, float, "a number")


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date. Expected YYYY-MM-DD.") from None


def _predict(args) -> int:
    from imgrec.core.images import read_image_file
    from imgrec.inference.predictor import Predictor
    from imgrec.inference.runtimes import MAX_BATCH
    from imgrec.inference.service import Upload, classify, log_classified

    settings = get_settings()
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
        results = iter(classify(predictor, uploads, args.top_k, settings))
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


def _store_or_warning(settings):
    """The prediction log, or None with a warning: a broken log must not cost the user the predictions."""
    from imgrec.predlog.store import open_store

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


def _models(args) -> int:
    from imgrec.registry import catalog

    settings = get_settings()
    active = catalog.active_ref(settings)
    rows = []
    for card in catalog.list_cards(settings):
        is_active = card.ref == active
        rows.append(
            {
                "name": card.name,
                "version": card.version,
                "backbone": card.backbone,
                "input_size": list(card.input_size),
                "classes": card.num_classes,
                "dataset": card.dataset,
                "metrics": card.metrics,
                "active": is_active,
            }
        )
    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif not rows:
        print("No models yet. Run `python -m imgrec init` to register the default ImageNet model.")
    else:
        for row in rows:
            marker = "*" if row["active"] else " "
            size = "x".join(map(str, row["input_size"]))
            print(f"{marker} {row['name']}@{row['version']}  {row['backbone']}  {size}  "
                  f"{row['classes']} classes  {row['dataset']}")
    return EXIT_OK


def _init(args) -> int:
    from imgrec.registry import catalog

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    card = catalog.ensure_default_model(settings)
    print(f"Default model ready: {card.ref} ({card.num_classes} classes).")
    return EXIT_OK


def _prune(args) -> int:
    from imgrec.predlog.store import open_store

    with open_store(get_settings()) as store:
        deleted = store.prune_uploads(args.days)
    print(f"Deleted {deleted} kept upload(s) not uploaded again for {args.days:g} days.")
    return EXIT_OK


def _serve(args) -> int:
    import uvicorn

    get_settings()  # a bad IMGREC_* value fails here, with a clear message, not in every worker
    uvicorn.run(
        "imgrec.api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
        log_level="info", access_log=False,
    )
    return EXIT_OK


def _export(args) -> int:
    from imgrec.export.exporter import export_model

    results = export_model(args.model, args.version, args.formats, get_settings(),
                           progress=lambda message: print(message, file=sys.stderr, flush=True))
    for result in results:
        print(result.summary())
    return EXIT_OK if all(result.ok for result in results) else EXIT_SOME_FAILED


def _log_export(args) -> int:
    import os
    import tempfile

    from imgrec.predlog import stats
    from imgrec.predlog.tabular import FORMATS, write_predictions
    from imgrec.predlog.store import open_store

    fmt = args.output.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ImgrecError(f"Unsupported export format '{fmt or args.output.name}'. Expected a file name ending in "
                          f"one of: {', '.join('.' + name for name in FORMATS)}.")
    filters = stats.Filters(
        date_from=args.date_from, date_to=args.date_to, labels=args.label, sources=args.source,
        model_names=[model for model in args.model if "@" not in model],
        models=[model for model in args.model if "@" in model],
    )
    folder = args.output.resolve().parent
    if not folder.is_dir():
        raise ImgrecError(f"Cannot write {args.output}: the folder {folder.name}/ does not exist.")
    # A temp file renamed into place: an interrupted export never leaves a half-written file behind.
    handle, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{args.output.name}.", suffix=".part")
    try:
        with open_store(get_settings()) as store, os.fdopen(handle, "wb") as destination:
            rows = write_predictions(store, filters, fmt, destination)
        os.replace(temp_name, args.output)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    print(f"Wrote {rows} prediction(s) to {args.output}.")
    return EXIT_OK


def _stats(args) -> int:
    from imgrec.predlog import stats
    from imgrec.predlog.store import open_store

    settings = get_settings()
    with open_store(settings) as store:
        report = stats.report(store, uncertain_threshold=settings.uncertain_threshold)
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    summary, latency = report["summary"], report["latency_ms"]
    print(f"predictions: {summary['predictions']} ({summary['distinct_images']} distinct images, "
          f"{summary['flagged']} flagged wrong)")
    if summary["predictions"]:
        print(f"mean confidence: {summary['mean_confidence']:.1%}   uncertain (< {summary['uncertain_threshold']:.0%}): "
              f"{summary['uncertain_share']:.1%}")
        print("latency: " + "  ".join(f"{name} {value:.1f} ms" for name, value in latency.items() if value is not None))
    for row in report["by_model"]:
        print(f"  {row['model_name']}@{row['model_version']}: {row['predictions']} predictions, "
              f"mean confidence {row['mean_confidence']:.1%}, mean latency {row['mean_latency_ms']:.1f} ms")
    if report["top_labels"]:
        print("top labels: " + ", ".join(f"{row['label']} {row['predictions']}" for row in report["top_labels"]))
    recent_days = sorted({row["day"] for row in report["by_day"]})[-RECENT_DAYS_SHOWN:]
    if recent_days:
        print(f"last {len(recent_days)} day(s) with predictions:")
        for row in (row for row in report["by_day"] if row["day"] in recent_days):
            print(f"  {row['day']}  {row['model_name']}@{row['model_version']}: {row['predictions']} predictions")
    return EXIT_OK


# -- Training, evaluation and runs -----------------------------------------------------------------


def _add_training_commands(commands) -> None:
    train = commands.add_parser("train", help="train a model from a run config (YAML); one run trains at a time")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="run config YAML (see imgrec.training.trainer.RunConfig)")
    source.add_argument("--run", metavar="RUN_ID", help="execute or resume an existing run in this process")
    train.add_argument("--detach", action="store_true", help="start the run in the background, print its id")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a registered model on a dataset split")
    evaluate.add_argument("model", metavar="MODEL", help="name or name@version")
    evaluate.add_argument("--dataset", required=True, help="cifar10, fashion_mnist or a folder")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--limit-per-class", type=_positive_int, help="evaluate on at most N images per class")
    evaluate.add_argument("--json", action="store_true", help="the full report as JSON")
    evaluate.set_defaults(handler=_evaluate)

    runs = commands.add_parser("runs", help="list, show, cancel or resume training runs")
    runs.add_argument("action", nargs="?", default="list", choices=("list", "show", "cancel", "resume"))
    runs.add_argument("run_id", nargs="?", metavar="RUN_ID")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=_runs)


def _train(args) -> int:
    from imgrec.training import runs
    from imgrec.training import trainer
    from imgrec.training.config import RunConfig

    settings = get_settings()
    if args.run:
        return trainer.main_worker(args.run, settings)
    run_config = RunConfig.from_yaml(args.config)
    if args.detach:
        run = runs.submit(run_config, settings)
        print(run.id)
        return EXIT_OK
    run = runs.create_run(run_config, settings)
    print(f"run {run.id}", flush=True)
    status = trainer.execute_run(run, settings)
    print(f"{status['state']}: {status.get('message', '')}")
    return EXIT_OK if status["state"] == runs.COMPLETED else EXIT_SOME_FAILED


def _evaluate(args) -> int:
    from imgrec.training.evaluation import evaluate_registered

    report = evaluate_registered(args.model, args.dataset, args.split, get_settings(), args.limit_per_class)
    if args.json:
        print(json.dumps(report.to_dict()))
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


def _runs(args) -> int:
    from imgrec.training import runs

    settings = get_settings()
    if args.action == "list":
        rows = [run.status() for run in runs.list_runs(settings)]
        for row in rows:
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{row['run_id']}  {row['state']:<11} epoch {row.get('epoch', 0)}/{row.get('total_epochs', '?')}"
                      f"  {row.get('model_ref') or ''}")
        if not rows and not args.json:
            print("No training runs yet.")
        return EXIT_OK
    if not args.run_id:
        raise runs.RunError(f"`runs {args.action}` needs a RUN_ID.")
    if args.action == "show":
        status = runs.get_run(args.run_id, settings).status()
    elif args.action == "cancel":
        status = runs.cancel(args.run_id, settings)
    else:
        status = runs.resume(args.run_id, settings).status()
    print(json.dumps(status, indent=None if args.json else 2))
    return EXIT_OK

"""``imgrec prune``, ``imgrec log-export`` and ``imgrec stats``: the prediction log from the command line."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from imgrec.cli.args import EXIT_OK, iso_date, non_negative_float
from imgrec.core.errors import ImgrecError
from imgrec.core.refs import ModelRef
from imgrec.core.settings import Settings

RECENT_DAYS_SHOWN = 7  # `imgrec stats` text output; --json has every day


def add_parser(commands) -> None:
    prune = commands.add_parser("prune", help="delete kept uploads older than the retention period")
    prune.add_argument("--days", type=non_negative_float, help="age in days (default: IMGREC_UPLOAD_RETENTION_DAYS)")
    prune.set_defaults(handler=run_prune)

    log_export = commands.add_parser("log-export", help="write the prediction log (filtered) to a CSV or Parquet file")
    log_export.add_argument("output", type=Path, metavar="FILE", help="the file to write: .csv or .parquet")
    log_export.add_argument("--from", dest="date_from", type=iso_date, help="first UTC day, YYYY-MM-DD")
    log_export.add_argument("--to", dest="date_to", type=iso_date, help="last UTC day (included), YYYY-MM-DD")
    log_export.add_argument("--model", action="append", default=[], help="name or name@version (repeatable)")
    log_export.add_argument("--label", action="append", default=[], help="top-1 label (repeatable)")
    log_export.add_argument("--source", action="append", default=[], help="app, api or cli (repeatable)")
    log_export.set_defaults(handler=run_log_export)

    stats = commands.add_parser("stats", help="aggregates over the prediction log (as GET /stats)")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=run_stats)


def run_prune(args, settings: Settings) -> int:
    from imgrec.predlog.store import open_store  # SQLAlchemy loads only for commands that use the log

    days = settings.upload_retention_days if args.days is None else args.days
    with open_store(settings) as store:
        deleted = store.prune_uploads(days)
    print(f"Deleted {deleted} kept upload(s) not uploaded again for {days:g} days.")
    return EXIT_OK


def run_log_export(args, settings: Settings) -> int:
    # SQLAlchemy and pandas load only for commands that use the log
    from imgrec.predlog import stats  # pandas and SQLAlchemy load only for log commands
    from imgrec.predlog.store import open_store  # (the same)
    from imgrec.predlog.tabular import FORMATS, write_predictions  # pyarrow loads only for log exports

    fmt = args.output.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ImgrecError(f"Unsupported export format '{fmt or args.output.name}'. Expected a file name ending in "
                          f"one of: {', '.join('.' + name for name in FORMATS)}.")
    refs = [ModelRef.parse(model) for model in args.model]
    filters = stats.Filters(
        date_from=args.date_from, date_to=args.date_to, labels=args.label, sources=args.source,
        model_names=[ref.name for ref in refs if not ref.pinned],
        models=[(ref.name, ref.version) for ref in refs if ref.pinned],
    )
    folder = args.output.resolve().parent
    if not folder.is_dir():
        raise ImgrecError(f"Cannot write {args.output}: the folder {folder.name}/ does not exist.")
    # A temp file renamed into place: an interrupted export never leaves a half-written file behind.
    handle, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{args.output.name}.", suffix=".part")
    try:
        with open_store(settings) as store, os.fdopen(handle, "wb") as destination:
            rows = write_predictions(store, filters, fmt, destination)
        os.replace(temp_name, args.output)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)
    print(f"Wrote {rows} prediction(s) to {args.output}.")
    return EXIT_OK


def run_stats(args, settings: Settings) -> int:
    # SQLAlchemy and pandas load only for commands that use the log
    from imgrec.predlog import stats  # pandas and SQLAlchemy load only for log commands
    from imgrec.predlog.store import open_store  # (the same)

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

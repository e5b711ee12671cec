"""How long each Analytics page query takes on a big SQLite prediction log.

Seeds a SQLite database with N predictions (default 1,000,000; bulk inserts in big transactions,
through the real schema and migrations), then times every query the page runs, unfiltered (the
worst case) and with a typical filter (last 30 days, one model), and says whether each is under 1 s.

    python bench/analytics.py                       # temp database, removed afterwards
    python bench/analytics.py --db /tmp/log.db      # keep it (a second run reuses it)
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from common import machine

from imgrec.predlog import stats, tabular
from imgrec.predlog.store import Store, predictions_table

BUDGET_S = 1.0
CHUNK = 50_000
DAYS = 90
MODELS = (("imagenet-mobilenetv2", "1"), ("imagenet-mobilenetv2", "2"), ("tiny-cnn", "3"))
LABEL_COUNT = 1000  # ImageNet-sized label space, Zipf-distributed like real traffic
START = datetime(2026, 1, 1)


def seed(store: Store, rows: int, rng: np.random.Generator) -> None:
    """Bulk rows straight through the driver (executemany, 50,000 rows a transaction), in the
    formats SQLAlchemy itself writes to SQLite, so the store reads them like any logged row."""
    distinct_images = max(rows // 3, 1)
    labels = [f"label_{index:04d}" for index in range(LABEL_COUNT)]
    # Like any bulk load: drop the indexes, insert, build them once at the end.
    with store.engine.begin() as connection:
        for index in predictions_table.indexes:
            index.drop(connection)
    with store.engine.begin() as connection:
        for start in range(0, distinct_images, CHUNK):
            count = min(CHUNK, distinct_images - start)
            connection.exec_driver_sql(
                "INSERT INTO uploads (sha256, byte_size, width, height, format, stored_path, created_at) "
                "VALUES (?, ?, 640, 480, 'JPEG', NULL, ?)",
                [
                    (f"{start + index:064x}", int(size), sqlite_timestamp(START))
                    for index, size in enumerate(rng.integers(20_000, 4_000_000, count))
                ],
            )
    written = 0
    while written < rows:
        count = min(CHUNK, rows - written)
        # Time runs forward across chunks, as in a real log; the last fifth drifts (less confident).
        offsets = np.sort(rng.uniform(written / rows, (written + count) / rows, count)) * DAYS * 86400
        scores = rng.beta(2, 2, count) if written >= rows * 0.8 else rng.beta(5, 1.6, count)
        label_ids = np.minimum(rng.zipf(1.3, count) - 1, LABEL_COUNT - 1)
        model_ids = rng.integers(0, len(MODELS), count)
        latencies = rng.lognormal(3.2, 0.45, count)
        upload_ids = rng.integers(1, distinct_images + 1, count)
        sources = rng.choice(np.array(["app", "api", "cli"]), count, p=[0.6, 0.35, 0.05])
        values = []
        for upload_id, model, label, score, latency, offset, source in zip(
            upload_ids, model_ids, label_ids, scores, latencies, offsets, sources
        ):
            created_at = START + timedelta(seconds=float(offset))
            values.append(
                (
                    int(upload_id),
                    *MODELS[model],
                    json.dumps([{"label": labels[label], "score": float(score)}]),
                    labels[label],
                    float(score),
                    float(latency),
                    sqlite_timestamp(created_at),
                    created_at.date().isoformat(),
                    str(source),
                    f"s{upload_id % 5000}",
                )
            )
        with store.engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO predictions (upload_id, model_name, model_version, top_k, top1_label, top1_score, "
                "latency_ms, created_at, created_day, source, session_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        written += count
        print(f"\r  seeded {written:,} / {rows:,} predictions", end="", flush=True)
    print()
    with store.engine.begin() as connection:
        for index in predictions_table.indexes:
            index.create(connection)
    flagged = rng.choice(np.arange(1, rows + 1), size=max(rows // 100, 1), replace=False)
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO feedback (prediction_id, corrected_label, wrong, note, created_at) VALUES (?, ?, 1, '', ?)",
            [
                (int(prediction_id), labels[int(prediction_id) % LABEL_COUNT], sqlite_timestamp(START))
                for prediction_id in flagged
            ],
        )


def sqlite_timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def page_queries(store: Store, filters: stats.Filters) -> dict[str, Callable[[], object]]:
    end = START + timedelta(days=DAYS)
    return {
        "summary (KPIs, p50/p95 latency)": lambda: stats.summary(store, filters),
        "by_model": lambda: stats.by_model(store, filters),
        "by_day (per model)": lambda: stats.by_day(store, filters),
        "by_label (top 20)": lambda: stats.by_label(store, filters, limit=20),
        "confidence_histogram (20 bins)": lambda: stats.confidence_histogram(store, filters, bins=20),
        "latency_percentiles (p50..p99)": lambda: stats.latency_percentiles(store, filters),
        "latency_over_time (per day)": lambda: stats.latency_over_time(store, filters),
        "review_queue (50)": lambda: stats.review_queue(store, filters, max_confidence=0.5, limit=50),
        "export first page (10,000 rows)": lambda: stats.export_rows(store, filters, limit=10_000),
        "drift (last 7 days vs 7 before)": lambda: stats.drift(
            store, (end - timedelta(days=14), end - timedelta(days=7)), (end - timedelta(days=7), end), filters
        ),
    }


def time_queries(title: str, queries: dict[str, Callable[[], object]], repeats: int) -> bool:
    print(f"\n{title}")
    print(f"  {'query':<36} {'first':>8} {'median':>8}  under {BUDGET_S:g} s")
    all_fast = True
    for name, query in queries.items():
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            query()
            timings.append(time.perf_counter() - started)
        median = statistics.median(timings)
        fast = median < BUDGET_S
        all_fast &= fast
        print(f"  {name:<36} {timings[0]:>7.3f}s {median:>7.3f}s  {'yes' if fast else 'NO'}")
    return all_fast


def time_exports(store: Store, folder: Path) -> None:
    """Whole-log exports are not page queries (no 1 s budget): how long, how big, how many rows a second."""
    print("\nExports (unfiltered)")
    cases = {
        f"app download, CSV (first {tabular.APP_ROW_LIMIT:,} rows)": ("csv", tabular.APP_ROW_LIMIT),
        "CLI log-export, CSV streamed to a file": ("csv", None),
        "CLI log-export, Parquet streamed to a file": ("parquet", None),
    }
    for name, (fmt, cap) in cases.items():
        target = folder / f"bench-export.{fmt}"
        started = time.perf_counter()
        with open(target, "wb") as destination:
            rows = tabular.write_predictions(store, stats.Filters(), fmt, destination, max_rows=cap)
        elapsed = time.perf_counter() - started
        print(f"  {name:<44} {rows:>9,} rows {elapsed:>7.1f} s {rows / elapsed:>9,.0f} rows/s "
              f"{target.stat().st_size / 1e6:>7.1f} MB")
        target.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="SQLite file to seed (or reuse); default: a temp dir")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    temp_dir = None if args.db else tempfile.mkdtemp(prefix="imgrec-bench-")
    path = args.db or Path(temp_dir) / "imgrec.db"
    print(f"machine: {machine()}")
    print(f"{platform.platform()}, SQLite {sqlite3.sqlite_version}, SQLAlchemy {sa.__version__}")
    try:
        store = Store(f"sqlite:///{path}")
        existing = store.count_predictions()
        if existing == 0:
            started = time.perf_counter()
            seed(store, args.rows, np.random.default_rng(0))
            elapsed = time.perf_counter() - started
            print(f"Seeded {args.rows:,} predictions in {elapsed:.1f} s ({args.rows / elapsed:,.0f} rows/s)")
        else:
            print(f"Reusing {path.name}: {existing:,} predictions")
        print(f"Database size: {path.stat().st_size / 1e6:.0f} MB")

        everything = time_queries("Unfiltered (all predictions)", page_queries(store, stats.Filters()), args.repeats)
        # What the Analytics page sends when models are picked: (name, version) pairs.
        typical = stats.Filters(date_from=START + timedelta(days=DAYS - 30), models=[("imagenet-mobilenetv2", "2")])
        filtered = time_queries("Last 30 days, one model version", page_queries(store, typical), args.repeats)
        time_exports(store, Path(temp_dir or path.parent))
        store.close()
        print(f"\nEvery query under {BUDGET_S:g} s: {'yes' if everything and filtered else 'NO'}")
        return 0
    finally:
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

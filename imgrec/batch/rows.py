"""Batch results as rows: one per image (or per item of a task that lists items), the same schema for every task.

The task's own fields (``Task.to_json``, the object ``imgrec predict --json`` prints) travel as JSON text in
``result``, beside the headline ``label`` and ``score`` (``Task.log_labels``), so a classifier's top-k, a
multi-label set and a detector's boxes all fit one Parquet schema. A task whose ``to_json`` lists separate
items (a detector's detections) names that field in ``batch_rows_from``: each item is then a row of its own.
"""

from __future__ import annotations

import json

import pyarrow as pa

from imgrec.inference.service import Outcome
from imgrec.tasks.registry import task_for

SCHEMA = pa.schema([
    ("source_path", pa.string()),
    ("model", pa.string()),
    ("task", pa.string()),
    ("label", pa.string()),
    ("score", pa.float64()),
    ("result", pa.string()),
    ("latency_ms", pa.float64()),
    ("sha256", pa.string()),
    ("prediction_id", pa.int64()),
    ("log_warning", pa.string()),  # why a prediction asked to be logged is not (yet) in the log
    ("error", pa.string()),
    ("detail", pa.string()),
])


def outcome_rows(outcome: Outcome) -> list[dict]:
    """The rows of one image after the service path; a refused one is one row with its error and message."""
    card = outcome.card
    base = {"source_path": outcome.upload.filename, "model": card.ref, "task": card.task}
    if not outcome.ok:
        return [{**base, "error": outcome.error_code, "detail": outcome.error}]
    task = task_for(card)
    fields = task.to_json(outcome.result)
    image = {**base, "latency_ms": round(outcome.result.latency_ms, 3), "sha256": outcome.image.sha256,
             "prediction_id": outcome.prediction_id, "log_warning": outcome.log_warning}
    items_field = task.batch_rows_from
    if items_field and fields.get(items_field):
        return [{**image, "label": item.get("label"), "score": item.get("score"), "result": json.dumps(item)}
                for item in fields[items_field]]
    labels = task.log_labels(outcome.result)
    label, score = labels[0] if labels else (None, None)
    return [{**image, "label": label, "score": None if score is None else float(score), "result": json.dumps(fields)}]


def rows_table(outcomes: list[Outcome]) -> pa.Table:
    return pa.Table.from_pylist([row for outcome in outcomes for row in outcome_rows(outcome)], schema=SCHEMA)

"""Analytics over the prediction log: the one query layer behind the Analytics page, ``/stats`` and ``imgrec stats``.

Every aggregate runs in SQL and returns a handful of rows, whatever the size of the log; every
filter value reaches the database as a bound parameter. Frames are small ``pandas`` DataFrames
(``frame_to_records`` makes them JSON-ready); ``Summary`` and ``DriftReport`` have ``to_dict()``.

Percentiles interpolate linearly between closest ranks, like PostgreSQL's ``percentile_cont``
(used there) and ``numpy.percentile``; SQLite counts first, then reads the one or two rows at the
right ``OFFSET`` of an index-ordered scan. Days are UTC calendar days, as ``'YYYY-MM-DD'`` text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from imgrec.core.errors import StoreError
from imgrec.predlog.sources import FRAME_INDEX, FRAME_TIME, VIDEO_SOURCE
from imgrec.predlog.store import (
    NO_DETECTIONS_LABEL,
    Store,
    as_utc_naive,
    detections_table,
    feedback_table,
    prediction_labels_table,
    predictions_table,
    uploads_table,
)

P, U, F, D = predictions_table.c, uploads_table.c, feedback_table.c, detections_table.c
L = prediction_labels_table.c

DEFAULT_UNCERTAIN_THRESHOLD = 0.5
# Population stability index: shares below this count as this, so an empty bin does not make PSI infinite.
PSI_EPSILON = 1e-4
PSI_MODERATE, PSI_MAJOR = 0.1, 0.25  # the usual reading: < 0.1 stable, < 0.25 moderate, else major
KS_BINS = 1000  # KS on score histograms of this resolution: D is exact to 0.001 of a score
VERDICTS = ("stable", "moderate shift", "major shift")
NOT_ENOUGH_DATA = "not enough data"
# Charts over time count per hour while the range spans at most this many days, per day beyond.
HOURLY_MAX_DAYS = 2


class _FloorToInt(FunctionElement):
    """floor(x) as an integer, for x >= 0 (score bins)."""

    type = sa.Integer()
    inherit_cache = True


@compiles(_FloorToInt, "sqlite")
def _floor_to_int_sqlite(element, compiler, **kw):
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"  # truncation == floor when >= 0


@compiles(_FloorToInt, "postgresql")
def _floor_to_int_postgresql(element, compiler, **kw):
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)}) AS INTEGER)"


@dataclass(frozen=True)
class Filters:
    """What to look at. Empty sequences and ``None`` mean "no restriction"; everything is ANDed.

    ``date_from`` is inclusive. ``date_to`` given as a date includes that whole (UTC) day; given as
    a datetime it is an exclusive bound. Timezone-aware datetimes are converted to UTC.

    ``models`` keeps predictions of any of the given ``(name, version)`` pairs (``"name@version"``
    text works too): picking a@1 and b@2 does not let a@2 or b@1 in. ``model_names`` and
    ``model_versions`` each restrict one column on its own.
    """

    date_from: date | datetime | None = None
    date_to: date | datetime | None = None
    model_names: Sequence[str] = ()
    model_versions: Sequence[str] = ()
    labels: Sequence[str] = ()
    sources: Sequence[str] = ()
    min_confidence: float | None = None
    max_confidence: float | None = None
    models: Sequence[tuple[str, str]] = ()  # last, so positional calls written before it still work
    detected_labels: Sequence[str] = ()  # detector predictions with at least one box of any of these classes
    set_labels: Sequence[str] = ()  # multi-label predictions whose label set holds any of these labels

    def __post_init__(self) -> None:
        for name in ("model_names", "model_versions", "labels", "sources", "detected_labels", "set_labels"):
            value = getattr(self, name) or ()
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        models = self.models or ()
        object.__setattr__(self, "models", tuple(_model_pair(model) for model in
                                                 ((models,) if isinstance(models, str) else models)))

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        """SQL conditions on ``predictions``; values travel as bound parameters, never as SQL text."""
        return _time_range(self.date_from, self.date_to) + self.conditions_except_time()

    def conditions_except_time(self) -> list[sa.ColumnElement[bool]]:
        conditions = []
        for column, values in (
            (P.model_name, self.model_names),
            (P.model_version, self.model_versions),
            (P.top1_label, self.labels),
            (P.source, self.sources),
        ):
            if values:
                conditions.append(column.in_(values))
        if self.models:
            # An OR of ANDs, not a row-value IN: SQLite then searches ix_predictions_model once per pair
            # (with IN (VALUES ...) it picked another index and checked the pairs row by row).
            conditions.append(
                sa.or_(*(sa.and_(P.model_name == name, P.model_version == version) for name, version in self.models))
            )
        if self.detected_labels:
            # Its own alias: queries over the detections table itself must not correlate with it.
            boxes = detections_table.alias("filter_boxes").c
            conditions.append(sa.exists().where(boxes.prediction_id == P.id, boxes.label.in_(self.detected_labels)))
        if self.set_labels:
            found = prediction_labels_table.alias("filter_labels").c
            conditions.append(sa.exists().where(found.prediction_id == P.id, found.label.in_(self.set_labels)))
        if self.min_confidence is not None:
            conditions.append(P.top1_score >= float(self.min_confidence))
        if self.max_confidence is not None:
            conditions.append(P.top1_score <= float(self.max_confidence))
        return conditions


def _model_pair(model: str | Sequence[str]) -> tuple[str, str]:
    """``("name", "version")`` from a pair or from ``"name@version"`` text as the log's own values make it
    (split at the first "@"; a logged version may be anything, even empty, so this is not ``ModelRef``)."""
    if isinstance(model, str):
        if "@" not in model:
            raise StoreError(f"Model filter {model!r} is not 'name@version' or a (name, version) pair.")
        model = model.split("@", 1)
    pair = tuple(model)
    if len(pair) != 2 or not all(isinstance(part, str) for part in pair):
        raise StoreError(f"Model filter {model!r} is not 'name@version' or a (name, version) pair.")
    return pair


NO_FILTERS = Filters()


@dataclass(frozen=True)
class Summary:
    predictions: int
    distinct_images: int
    mean_confidence: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    uncertain_share: float | None  # share of predictions whose top-1 score is below the threshold
    uncertain_threshold: float
    flagged: int  # predictions someone marked wrong
    corrected: int = 0  # predictions someone relabelled (a corrected label given)
    confirmed: int = 0  # predictions someone marked right

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    """Window B compared with baseline window A. ``drifted`` means at least a moderate shift."""

    window_a: tuple[str, str]
    window_b: tuple[str, str]
    predictions_a: int
    predictions_b: int
    mean_confidence_a: float | None
    mean_confidence_b: float | None
    confidence_psi: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    label_psi: float | None
    confidence_verdict: str
    label_verdict: str
    verdict: str
    drifted: bool
    label_shifts: list[dict[str, Any]]  # labels whose share moved most: label, share_a, share_b

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def report(
    store: Store,
    filters: Filters = NO_FILTERS,
    label_limit: int = 10,
    uncertain_threshold: float = DEFAULT_UNCERTAIN_THRESHOLD,
) -> dict[str, Any]:
    """Totals, by model, by label, by day and latency percentiles: ``GET /stats`` and ``imgrec stats``."""
    return {
        "summary": summary(store, filters, uncertain_threshold).to_dict(),
        "latency_ms": latency_percentiles(store, filters),
        "by_model": frame_to_records(by_model(store, filters)),
        "top_labels": frame_to_records(by_label(store, filters, limit=label_limit)),
        "by_day": frame_to_records(by_day(store, filters)),
    }


def frame_to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready rows: ISO timestamps, ``None`` for missing values, plain Python numbers (full precision)."""
    return [
        {key: _json_value(value) for key, value in record.items()} for record in frame.to_dict(orient="records")
    ]


def _json_value(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return value
    if pd.isna(value):
        return None
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    return value


# -- KPIs and breakdowns -----------------------------------------------------------------------


def summary(
    store: Store, filters: Filters = NO_FILTERS, uncertain_threshold: float = DEFAULT_UNCERTAIN_THRESHOLD
) -> Summary:
    """The KPIs: volume, distinct images, mean top-1 confidence, p50/p95 latency, uncertain share, flags."""
    conditions = filters.conditions()
    with _reading(store, "the summary") as connection:
        count, mean_confidence, uncertain_share = connection.execute(
            sa.select(sa.func.count(), sa.func.avg(P.top1_score), _share(P.top1_score < uncertain_threshold)).where(
                *conditions
            )
        ).one()
        # Separately: alone, SQLite counts distinct images from the upload_id index instead of sorting.
        distinct_images = connection.scalar(sa.select(sa.func.count(sa.distinct(P.upload_id))).where(*conditions))
        flagged = connection.scalar(
            sa.select(sa.func.count(sa.distinct(F.prediction_id)))
            .join_from(feedback_table, predictions_table, F.prediction_id == P.id)
            .where(F.wrong.is_(True), *conditions)
        )
        corrected, confirmed = connection.execute(
            sa.select(
                sa.func.count(sa.distinct(sa.case((_corrected(F), F.prediction_id)))),
                sa.func.count(sa.distinct(sa.case((F.wrong.is_(False), F.prediction_id)))),
            )
            .join_from(feedback_table, predictions_table, F.prediction_id == P.id)
            .where(*conditions)
        ).one()
        p50, p95 = _percentiles(store, connection, P.latency_ms, conditions, (0.5, 0.95), count=count)
    return Summary(
        predictions=count,
        distinct_images=distinct_images,
        mean_confidence=_float(mean_confidence),
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        uncertain_share=_float(uncertain_share),
        uncertain_threshold=uncertain_threshold,
        flagged=flagged,
        corrected=corrected,
        confirmed=confirmed,
    )


def latency_percentiles(
    store: Store, filters: Filters = NO_FILTERS, quantiles: Sequence[float] = (0.5, 0.9, 0.95, 0.99)
) -> dict[str, float | None]:
    """``{"p50": ms, "p90": ms, ...}`` over the filtered predictions (``None`` when there are none)."""
    for quantile in quantiles:
        if not 0.0 <= quantile <= 1.0:
            raise StoreError(f"Quantile {quantile!r} is outside [0, 1].")
    with _reading(store, "latency percentiles") as connection:
        values = _percentiles(store, connection, P.latency_ms, filters.conditions(), quantiles)
    return {f"p{quantile * 100:g}": value for quantile, value in zip(quantiles, values)}


def by_model(
    store: Store, filters: Filters = NO_FILTERS, uncertain_threshold: float = DEFAULT_UNCERTAIN_THRESHOLD
) -> pd.DataFrame:
    """One row per model version: volume, confidence, latency and time span (all read from one index)."""
    query = (
        sa.select(
            P.model_name,
            P.model_version,
            sa.func.count().label("predictions"),
            sa.func.avg(P.top1_score).label("mean_confidence"),
            sa.func.avg(P.latency_ms).label("mean_latency_ms"),
            _share(P.top1_score < uncertain_threshold).label("uncertain_share"),
            sa.func.min(P.created_at).label("first_seen"),
            sa.func.max(P.created_at).label("last_seen"),
        )
        .where(*filters.conditions())
        .group_by(P.model_name, P.model_version)
        .order_by(P.model_name, P.model_version)
    )
    return _frame(store, "predictions by model", query)


def by_label(store: Store, filters: Filters = NO_FILTERS, limit: int = 20) -> pd.DataFrame:
    """The ``limit`` most frequent top-1 labels, with their share of all filtered predictions."""
    conditions = filters.conditions()
    count = sa.func.count()
    query = (
        sa.select(
            P.top1_label.label("label"),
            count.label("predictions"),
            sa.func.avg(P.top1_score).label("mean_confidence"),
        )
        .where(*conditions)
        .group_by(P.top1_label)
        .order_by(count.desc(), P.top1_label)
        .limit(_positive(limit, "limit"))
    )
    with _reading(store, "predictions by label") as connection:
        total = connection.scalar(_count(conditions))
        frame = pd.DataFrame(connection.execute(query).all(), columns=["label", "predictions", "mean_confidence"])
    frame.insert(2, "share", frame["predictions"] / total if total else 0.0)
    return frame


def by_day(store: Store, filters: Filters = NO_FILTERS) -> pd.DataFrame:
    """Predictions per UTC day and model version (long format: pivot on the page)."""
    query = (
        sa.select(P.created_day.label("day"), P.model_name, P.model_version, sa.func.count().label("predictions"))
        .where(*filters.conditions())
        .group_by(P.created_day, P.model_name, P.model_version)
        .order_by(P.created_day, P.model_name, P.model_version)
    )
    return _with_iso_days(_frame(store, "predictions by day", query))


def bucket_for(first: date | datetime, last: date | datetime) -> str:
    """ "hour" for a range of at most ``HOURLY_MAX_DAYS`` days (day one gets more than one bar), else "day"."""
    return "hour" if (as_utc_naive(last) - as_utc_naive(first)) <= timedelta(days=HOURLY_MAX_DAYS - 1) else "day"


def over_time(store: Store, filters: Filters = NO_FILTERS, bucket: str = "day") -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(counts, latency)`` per ``bucket`` ("hour" or "day", UTC), the start of each in ``time`` (ISO
    text): predictions per model version, and predictions with mean/p50/p95 latency."""
    if bucket == "day":
        counts = by_day(store, filters).rename(columns={"day": "time"})
        latency = latency_over_time(store, filters).rename(columns={"day": "time"})
        return counts, latency
    if bucket != "hour":
        raise StoreError(f"Bucket {bucket!r} is not one of: hour, day.")
    query = (
        sa.select(_hour(store).label("time"), P.model_name, P.model_version, P.latency_ms)
        .where(*filters.conditions())
    )
    # At most HOURLY_MAX_DAYS of rows: few enough to bucket in pandas on both backends.
    rows = _frame(store, "predictions by hour", query)
    rows["time"] = _iso_hours(rows["time"])
    counts = (rows.groupby(["time", "model_name", "model_version"], as_index=False).size()
              .rename(columns={"size": "predictions"}))
    grouped = rows.groupby("time")["latency_ms"]
    latency = pd.DataFrame({
        "predictions": grouped.size(), "mean_latency_ms": grouped.mean(),
        "p50_latency_ms": grouped.quantile(0.5), "p95_latency_ms": grouped.quantile(0.95),
    }).reset_index()
    return counts, latency


def _hour(store: Store) -> sa.ColumnElement:
    """The UTC hour a prediction was made in (a timestamp on PostgreSQL, ISO text on SQLite)."""
    return (sa.func.date_trunc("hour", P.created_at) if store.backend == "postgresql"
            else sa.func.strftime("%Y-%m-%dT%H:00:00", P.created_at))


def _iso_hours(values) -> list[str]:
    return [value.isoformat() if isinstance(value, datetime) else value for value in values]


def recent_windows(store: Store, filters: Filters = NO_FILTERS, recent: int = 200) -> tuple[Window, Window] | None:
    """Windows for drift over the last ``recent`` predictions against the ``recent`` before them (by time);
    None when the filtered log holds fewer than two predictions."""
    recent = _positive(recent, "recent")
    query = sa.select(P.created_at).where(*filters.conditions()).order_by(P.created_at.desc()).limit(2 * recent)
    with _reading(store, "the recent windows") as connection:
        times = [row[0] for row in connection.execute(query).all()]
    if len(times) < 2:
        return None
    split = times[min(recent, len(times) // 2) - 1]  # the oldest of the recent ones
    end = times[0] + timedelta(microseconds=1)  # datetime ends are exclusive
    return (times[-1], split), (split, end)


def confidence_histogram(store: Store, filters: Filters = NO_FILTERS, bins: int = 10) -> pd.DataFrame:
    """Top-1 scores in ``bins`` equal bins over [0, 1] (the last one includes 1.0), empty bins included."""
    bins = _positive(bins, "bins")
    scored = sa.select(_score_bin(P.top1_score, bins).label("bin")).where(*filters.conditions()).subquery()
    query = sa.select(scored.c.bin, sa.func.count()).group_by(scored.c.bin)
    with _reading(store, "the confidence histogram") as connection:
        counts = dict(connection.execute(query).all())
    return pd.DataFrame(
        {
            "bin": range(bins),
            "lower": [index / bins for index in range(bins)],
            "upper": [(index + 1) / bins for index in range(bins)],
            "predictions": [counts.get(index, 0) for index in range(bins)],
        }
    )


def latency_over_time(store: Store, filters: Filters = NO_FILTERS) -> pd.DataFrame:
    """Per UTC day: predictions, mean, median and 95th-percentile latency."""
    conditions = filters.conditions()
    daily = (
        sa.select(
            P.created_day.label("day"),
            sa.func.count().label("predictions"),
            sa.func.avg(P.latency_ms).label("mean_latency_ms"),
        )
        .where(*conditions)
        .group_by(P.created_day)
        .order_by(P.created_day)
    )
    if store.backend == "postgresql":
        daily = daily.add_columns(
            sa.func.percentile_cont(0.5).within_group(P.latency_ms).label("p50_latency_ms"),
            sa.func.percentile_cont(0.95).within_group(P.latency_ms).label("p95_latency_ms"),
        )
        return _with_iso_days(_frame(store, "latency over time", daily))
    # SQLite: per day, read the rows around each quantile's rank off the (created_day, ..., latency_ms)
    # index (a window function ranking every row takes seconds at a million rows). The time bounds
    # matter only on the first and last day; leaving them out elsewhere lets SQLite walk that index
    # instead of sorting the whole filtered range once per day.
    start = as_utc_naive(filters.date_from) if filters.date_from is not None else None
    end = _exclusive_end(filters.date_to) if filters.date_to is not None else None
    other_conditions = filters.conditions_except_time()
    with _reading(store, "latency over time") as connection:
        rows = []
        for day, count, mean in connection.execute(daily).all():
            day_start = datetime(day.year, day.month, day.day)
            whole_day = (start is None or start <= day_start) and (end is None or day_start + timedelta(days=1) <= end)
            day_conditions = [*other_conditions, P.created_day == day]
            if not whole_day:
                day_conditions += _time_range(filters.date_from, filters.date_to)
            p50, p95 = _percentiles(store, connection, P.latency_ms, day_conditions, (0.5, 0.95), count=count)
            rows.append((day, count, mean, p50, p95))
    columns = ["day", "predictions", "mean_latency_ms", "p50_latency_ms", "p95_latency_ms"]
    return _with_iso_days(pd.DataFrame(rows, columns=columns))


# -- detections --------------------------------------------------------------------------------


def objects_by_day(store: Store, filters: Filters = NO_FILTERS) -> pd.DataFrame:
    """Detected objects per UTC day and class of the filtered predictions (long format: pivot on the page)."""
    query = (
        sa.select(P.created_day.label("day"), D.label, sa.func.count().label("objects"))
        .join_from(detections_table, predictions_table, D.prediction_id == P.id)
        .where(*filters.conditions())
        .group_by(P.created_day, D.label)
        .order_by(P.created_day, D.label)
    )
    return _with_iso_days(_frame(store, "objects by day", query))


def objects_over_time(store: Store, filters: Filters = NO_FILTERS, bucket: str = "day") -> pd.DataFrame:
    """Detected objects per ``bucket`` ("hour" or "day", UTC, as ``over_time``) and class: ``time`` (ISO
    text of the bucket's start), ``label``, ``objects``."""
    if bucket == "day":
        return objects_by_day(store, filters).rename(columns={"day": "time"})
    if bucket != "hour":
        raise StoreError(f"Bucket {bucket!r} is not one of: hour, day.")
    hour = _hour(store)
    query = (
        sa.select(hour.label("time"), D.label, sa.func.count().label("objects"))
        .join_from(detections_table, predictions_table, D.prediction_id == P.id)
        .where(*filters.conditions())
        .group_by(hour, D.label)
        .order_by(hour, D.label)
    )
    frame = _frame(store, "objects by hour", query)
    frame["time"] = _iso_hours(frame["time"])
    return frame


def objects_per_image(store: Store, filters: Filters = NO_FILTERS) -> pd.DataFrame:
    """How many of the filtered detector predictions found 0, 1, 2, … objects (classifiers' rows left out)."""
    # Over the outer join: a row with a box, or a detector's prediction that found nothing.
    is_detection = sa.or_(D.id.is_not(None), P.top1_label == NO_DETECTIONS_LABEL)
    per_prediction = (
        sa.select(sa.func.count(D.id).label("objects"))
        .select_from(predictions_table)
        .outerjoin(detections_table, D.prediction_id == P.id)
        .where(is_detection, *filters.conditions())
        .group_by(P.id)
        .subquery()
    )
    query = (sa.select(per_prediction.c.objects, sa.func.count().label("predictions"))
             .group_by(per_prediction.c.objects).order_by(per_prediction.c.objects))
    return _frame(store, "objects per image", query)


def detection_score_histogram(store: Store, filters: Filters = NO_FILTERS, bins: int = 10) -> pd.DataFrame:
    """Every detected box's score in ``bins`` equal bins over [0, 1], like ``confidence_histogram``."""
    bins = _positive(bins, "bins")
    scored = (sa.select(_score_bin(D.score, bins).label("bin"))
              .join_from(detections_table, predictions_table, D.prediction_id == P.id)
              .where(*filters.conditions()).subquery())
    query = sa.select(scored.c.bin, sa.func.count()).group_by(scored.c.bin)
    with _reading(store, "the detection score histogram") as connection:
        counts = dict(connection.execute(query).all())
    return pd.DataFrame({"bin": range(bins), "lower": [i / bins for i in range(bins)],
                         "upper": [(i + 1) / bins for i in range(bins)],
                         "objects": [counts.get(i, 0) for i in range(bins)]})


@dataclass(frozen=True)
class Contents:
    """Which tasks' and sources' rows the whole log holds: the Analytics page shows a section for each."""

    detections: bool
    label_sets: bool
    video_frames: bool
    detected_labels: list[str]  # every class a detector found, for the filter
    set_labels: list[str]  # every label a multi-label prediction found, for the filter
    label_set_models: list[str]  # "name@version" of models that logged label sets (reviewed as sets)


def contents(store: Store) -> Contents:
    """What the log holds, from a few index reads (unfiltered: the filters' own choices come from it)."""
    with _reading(store, "what the log holds") as connection:
        detections = connection.scalar(sa.select(sa.exists().where(
            sa.or_(P.top1_label == NO_DETECTIONS_LABEL, P.id.in_(sa.select(D.prediction_id))))))
        video_frames = connection.scalar(sa.select(sa.exists().where(P.source == VIDEO_SOURCE)))
        detected_labels = connection.scalars(sa.select(D.label).distinct().order_by(D.label)).all()
        set_labels = connection.scalars(sa.select(L.label).distinct().order_by(L.label)).all()
        set_models = connection.execute(
            sa.select(P.model_name, P.model_version).distinct().where(P.id.in_(sa.select(L.prediction_id)))
            .order_by(P.model_name, P.model_version)).all()
    return Contents(bool(detections), bool(set_labels), bool(video_frames), list(detected_labels), list(set_labels),
                    [f"{name}@{version}" for name, version in set_models])


# -- label sets --------------------------------------------------------------------------------


def label_counts(store: Store, filters: Filters = NO_FILTERS, limit: int = 30) -> pd.DataFrame:
    """The ``limit`` labels most often found in the filtered multi-label predictions: how many predictions
    found each, their share of the predictions with a label set, and the mean score."""
    conditions = filters.conditions()
    count = sa.func.count()
    query = (
        sa.select(L.label, count.label("predictions"), sa.func.avg(L.score).label("mean_score"))
        .join_from(prediction_labels_table, predictions_table, L.prediction_id == P.id)
        .where(*conditions)
        .group_by(L.label)
        .order_by(count.desc(), L.label)
        .limit(_positive(limit, "limit"))
    )
    with _reading(store, "label counts") as connection:
        with_a_set = connection.scalar(
            sa.select(sa.func.count(sa.distinct(L.prediction_id)))
            .join_from(prediction_labels_table, predictions_table, L.prediction_id == P.id).where(*conditions))
        frame = pd.DataFrame(connection.execute(query).all(), columns=["label", "predictions", "mean_score"])
    frame.insert(2, "share", frame["predictions"] / with_a_set if with_a_set else 0.0)
    return frame


def label_co_occurrence(store: Store, filters: Filters = NO_FILTERS, limit: int = 15) -> pd.DataFrame:
    """How often two labels were found in one prediction, over the ``limit`` most frequent labels: one row
    per ordered pair (both orders, and a label with itself = its own count), for a symmetric heatmap."""
    top = label_counts(store, filters, limit)["label"].tolist()
    if not top:
        return pd.DataFrame(columns=["label_a", "label_b", "predictions"])
    first, second = prediction_labels_table.alias("first"), prediction_labels_table.alias("second")
    count = sa.func.count()
    query = (
        sa.select(first.c.label.label("label_a"), second.c.label.label("label_b"), count.label("predictions"))
        .join_from(first, second, first.c.prediction_id == second.c.prediction_id)
        .join(predictions_table, P.id == first.c.prediction_id)
        .where(first.c.label.in_(top), second.c.label.in_(top), *filters.conditions())
        .group_by(first.c.label, second.c.label)
        .order_by(first.c.label, second.c.label)
    )
    return _frame(store, "label co-occurrence", query)


# -- video -------------------------------------------------------------------------------------


def media(store: Store, filters: Filters = NO_FILTERS) -> dict[str, int]:
    """Photos against videos: predictions on still images, on video frames, and distinct videos."""
    is_frame = P.source == VIDEO_SOURCE
    with _reading(store, "photos and videos") as connection:
        photos, frames = connection.execute(
            sa.select(sa.func.coalesce(sa.func.sum(_indicator(~is_frame)), 0),
                      sa.func.coalesce(sa.func.sum(_indicator(is_frame)), 0)).where(*filters.conditions())
        ).one()
        videos = connection.scalar(sa.select(sa.func.count(sa.distinct(P.upload_id)))
                                   .where(is_frame, *filters.conditions()))
    return {"photo_predictions": int(photos), "frame_predictions": int(frames), "videos": int(videos)}


def videos(store: Store, filters: Filters = NO_FILTERS, limit: int = 100) -> pd.DataFrame:
    """One row per filtered video and model (newest first): its logged frames, the first and last frame's
    index and time, the mean score and the most frequent headline label."""
    frame_index = P.metadata[FRAME_INDEX].as_integer()
    frame_time = P.metadata[FRAME_TIME].as_float()
    conditions = [P.source == VIDEO_SOURCE, *filters.conditions()]
    count = sa.func.count()
    query = (
        sa.select(
            P.upload_id,
            sa.func.max(P.filename).label("filename"),
            U.sha256,
            P.model_name,
            P.model_version,
            count.label("frames"),
            sa.func.min(frame_index).label("first_frame"),
            sa.func.max(frame_index).label("last_frame"),
            sa.func.min(frame_time).label("first_time_s"),
            sa.func.max(frame_time).label("last_time_s"),
            sa.func.avg(P.top1_score).label("mean_confidence"),
            sa.func.max(P.created_at).label("logged_at"),
        )
        .join_from(predictions_table, uploads_table, P.upload_id == U.id)
        .where(*conditions)
        .group_by(P.upload_id, U.sha256, P.model_name, P.model_version)
        .order_by(sa.func.max(P.created_at).desc(), P.upload_id)
        .limit(_positive(limit, "limit"))
    )
    ranked = (
        sa.select(P.upload_id, P.model_name, P.model_version, P.top1_label, count.label("frames"))
        .where(*conditions)
        .group_by(P.upload_id, P.model_name, P.model_version, P.top1_label)
    )
    with _reading(store, "videos") as connection:
        result = connection.execute(query)
        frame = pd.DataFrame(result.all(), columns=list(result.keys()))
        labels = pd.DataFrame(connection.execute(ranked).all(),
                              columns=["upload_id", "model_name", "model_version", "top_label", "label_frames"])
    keys = ["upload_id", "model_name", "model_version"]
    # The most frequent headline per video and model; ties go to the label first in the alphabet.
    labels = labels.sort_values([*keys, "label_frames", "top_label"], ascending=[True, True, True, False, True])
    frame = frame.merge(labels.drop_duplicates(keys)[[*keys, "top_label"]], on=keys, how="left")
    return frame.drop(columns="upload_id")


# -- rows --------------------------------------------------------------------------------------


def review_queue(
    store: Store, filters: Filters = NO_FILTERS, max_confidence: float = DEFAULT_UNCERTAIN_THRESHOLD, limit: int = 50,
    reviewed: bool = True,
) -> pd.DataFrame:
    """Predictions worth a look: flagged wrong first, then the least confident, below ``max_confidence``.
    A detector's prediction counts by its lowest-scoring box (``review_score``), so a doubtful box
    beside a sure one is reviewed too.

    Each row carries the top-k (a list of ``{"label", "score"}``), the file name, the image's hash, kept
    file (``stored_path``, relative to the uploads dir, or None), review ``thumbnail`` (JPEG bytes or
    None) and the latest feedback, if any. ``reviewed=False`` leaves out what someone relabelled or
    marked right already (the relabelling loop's "still to do").
    """
    limit = _positive(limit, "limit")
    conditions = filters.conditions()
    if not reviewed:
        done = feedback_table.alias("done")
        conditions.append(~sa.exists().where(done.c.prediction_id == P.id,
                                             sa.or_(_corrected(done.c), done.c.wrong.is_(False))))
    # The result is among (flagged rows) + (the ``limit`` least confident rows), each found by an index,
    # so the final sort sees at most 2 * limit rows instead of every matching prediction.
    least_confident = (
        sa.select(P.id)
        .where(P.top1_score < max_confidence, *conditions)
        .order_by(P.top1_score, P.id)
        .limit(limit)
        .subquery()
    )
    flagged = (
        sa.select(P.id, P.top1_score)
        .join_from(feedback_table, predictions_table, F.prediction_id == P.id)
        .where(F.wrong.is_(True), *conditions)
        .group_by(P.id, P.top1_score)
        .order_by(P.top1_score, P.id)
        .limit(limit)
        .subquery()
    )
    def least_sure_items(items):
        """Predictions with an item (a box, a found label) under ``max_confidence``, least sure item first."""
        return (
            sa.select(items.c.prediction_id.label("id"))
            .join_from(items, predictions_table, items.c.prediction_id == P.id)
            .where(items.c.score < max_confidence, *conditions)
            .group_by(items.c.prediction_id)
            .order_by(sa.func.min(items.c.score), items.c.prediction_id)
            .limit(limit)
            .subquery()
        )

    doubtful_boxes = least_sure_items(detections_table)
    doubtful_labels = least_sure_items(prediction_labels_table)
    candidates = sa.union(sa.select(least_confident.c.id), sa.select(flagged.c.id),
                          sa.select(doubtful_boxes.c.id), sa.select(doubtful_labels.c.id)).subquery()
    lowest_box = sa.select(sa.func.min(D.score)).where(D.prediction_id == P.id).correlate(predictions_table)
    lowest_label = sa.select(sa.func.min(L.score)).where(L.prediction_id == P.id).correlate(predictions_table)
    # A prediction has boxes or a label set, never both: its least sure part, else its headline.
    lowest_part = sa.func.coalesce(lowest_box.scalar_subquery(), lowest_label.scalar_subquery())
    review_score = sa.case((lowest_part < P.top1_score, lowest_part), else_=P.top1_score)
    flags = feedback_table.alias("flags")  # not the outer query's (latest) feedback row
    is_flagged = sa.exists().where(flags.c.prediction_id == P.id, flags.c.wrong.is_(True))
    query = (
        _with_upload_and_latest_feedback(
            P.id.label("prediction_id"),
            P.created_at,
            P.model_name,
            P.model_version,
            P.top1_label,
            P.top1_score,
            P.top_k,
            P.source,
            P.filename,
            U.sha256,
            U.stored_path,
            U.thumbnail,
            is_flagged.label("flagged"),
            review_score.label("review_score"),
        )
        .where(P.id.in_(sa.select(candidates.c.id)))
        .order_by(is_flagged.desc(), review_score, P.id)
        .limit(limit)
    )
    with _reading(store, "the review queue") as connection:
        result = connection.execute(query)
        frame = pd.DataFrame(result.all(), columns=list(result.keys()))
        sets = _label_sets(connection, frame["prediction_id"])
    frame["flagged"] = frame["flagged"].astype(bool)
    frame["label_set"] = [sets.get(prediction_id) for prediction_id in frame["prediction_id"]]
    return frame


def _label_sets(connection: sa.Connection, prediction_ids) -> dict[int, list[str]]:
    """The labels each of these predictions found, best first (multi-label predictions with a label only)."""
    ids = sorted({int(prediction_id) for prediction_id in prediction_ids})
    if not ids:
        return {}
    rows = connection.execute(
        sa.select(L.prediction_id, L.label).where(L.prediction_id.in_(ids))
        .order_by(L.prediction_id, L.score.desc(), L.id)
    ).all()
    sets: dict[int, list[str]] = {}
    for prediction_id, label in rows:
        sets.setdefault(prediction_id, []).append(label)
    return sets


def _with_upload_and_latest_feedback(*columns: sa.ColumnElement) -> sa.Select:
    latest_feedback_id = (
        sa.select(sa.func.max(F.id)).where(F.prediction_id == P.id).correlate(predictions_table).scalar_subquery()
    )
    return (
        sa.select(*columns, F.corrected_label, F.corrected_labels, F.note, F.created_at.label("feedback_at"))
        .join_from(predictions_table, uploads_table, P.upload_id == U.id)
        .outerjoin(feedback_table, F.id == latest_feedback_id)
    )


# The export's columns, in file order: the select below is their one definition, then ``label_set``. A
# detector's prediction gives one row per box (``detection_*`` columns; empty for other tasks and for a
# detector that found nothing); a multi-label one a single row whose ``label_set`` lists the labels found
# (JSON text; ``corrected_labels`` is a reviewer's set).
_EXPORT_QUERY = _with_upload_and_latest_feedback(
    P.id.label("prediction_id"),
    P.created_at,
    P.filename,
    P.source,
    P.session_id,
    P.user_agent,
    P.model_name,
    P.model_version,
    P.top1_label,
    P.top1_score,
    P.latency_ms,
    P.top_k,
    P.metadata,
    U.sha256,
    U.byte_size,
    U.width,
    U.height,
    U.format,
    U.stored_path,
    D.rank.label("detection_rank"),
    D.label.label("detection_label"),
    D.score.label("detection_score"),
    D.x1.label("detection_x1"),
    D.y1.label("detection_y1"),
    D.x2.label("detection_x2"),
    D.y2.label("detection_y2"),
).outerjoin(detections_table, D.prediction_id == P.id)
EXPORT_COLUMNS = (*_EXPORT_QUERY.selected_columns.keys(), "label_set")


def export_rows(store: Store, filters: Filters = NO_FILTERS, limit: int = 10_000, after_id: int = 0) -> pd.DataFrame:
    """One page of ``limit`` filtered predictions in id order (a detector's one row per box), starting after
    ``after_id``; JSON columns as text.

    Page with ``after_id = page["prediction_id"].iloc[-1]`` (or use ``iter_export``): each page is an
    index range scan, so the last page costs what the first does, and a prediction's boxes are never split.
    """
    page = (sa.select(P.id).where(P.id > after_id, *filters.conditions()).order_by(P.id)
            .limit(_positive(limit, "limit")))
    query = _EXPORT_QUERY.where(P.id.in_(page)).order_by(P.id, D.rank)
    with _reading(store, "the export") as connection:
        result = connection.execute(query)
        frame = pd.DataFrame(result.all(), columns=list(result.keys()))
        sets = _label_sets(connection, frame["prediction_id"])
    frame["detection_rank"] = frame["detection_rank"].astype("Int64")  # no box: empty, not NaN in a float column
    frame["label_set"] = [sets.get(prediction_id) for prediction_id in frame["prediction_id"]]
    for column in ("top_k", "metadata", "corrected_labels", "label_set"):
        frame[column] = [None if value is None else json.dumps(value) for value in frame[column]]
    return frame


def iter_export(store: Store, filters: Filters = NO_FILTERS, page_size: int = 10_000) -> Iterator[pd.DataFrame]:
    """Every filtered prediction, page by page (write each page to CSV/Parquet as it comes)."""
    after_id = 0
    while True:
        page = export_rows(store, filters, limit=page_size, after_id=after_id)
        if page.empty:
            return
        yield page
        after_id = int(page["prediction_id"].iloc[-1])


# -- drift -------------------------------------------------------------------------------------

Window = tuple[date | datetime, date | datetime]


def drift(
    store: Store,
    window_a: Window,
    window_b: Window,
    filters: Filters = NO_FILTERS,
    bins: int = 10,
    label_limit: int = 50,
    min_predictions: int = 30,
) -> DriftReport:
    """Compare window B with baseline window A: top-1 confidence (PSI over ``bins`` + two-sample KS)
    and top-1 labels (PSI over the ``label_limit`` most frequent labels plus one "other" bucket).

    Windows are ``(start, end)`` read like ``Filters.date_from/date_to``. A verdict is "not enough
    data" while either window has fewer than ``min_predictions`` predictions.
    """
    bins = _positive(bins, "bins")
    conditions = filters.conditions()
    in_a = sa.and_(*_time_range(*window_a))
    in_b = sa.and_(*_time_range(*window_b))
    either = sa.or_(in_a, in_b)
    with _reading(store, "drift") as connection:
        count_a, count_b, mean_a, mean_b = connection.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(_indicator(in_a)), 0),
                sa.func.coalesce(sa.func.sum(_indicator(in_b)), 0),
                sa.func.avg(sa.case((in_a, P.top1_score))),
                sa.func.avg(sa.case((in_b, P.top1_score))),
            ).where(either, *conditions)
        ).one()
        scored = sa.select(
            _score_bin(P.top1_score, bins).label("bin"),
            _score_bin(P.top1_score, KS_BINS).label("fine_bin"),
            _indicator(in_a).label("in_a"),
            _indicator(in_b).label("in_b"),
        ).where(either, *conditions).subquery()
        score_rows = connection.execute(
            sa.select(scored.c.bin, scored.c.fine_bin, sa.func.sum(scored.c.in_a), sa.func.sum(scored.c.in_b))
            .group_by(scored.c.bin, scored.c.fine_bin)
        ).all()
        labelled = sa.select(
            P.top1_label.label("label"), _indicator(in_a).label("in_a"), _indicator(in_b).label("in_b")
        ).where(either, *conditions).subquery()
        label_a, label_b = sa.func.sum(labelled.c.in_a), sa.func.sum(labelled.c.in_b)
        label_rows = connection.execute(
            sa.select(labelled.c.label, label_a, label_b)
            .group_by(labelled.c.label)
            .order_by((label_a + label_b).desc(), labelled.c.label)
            .limit(_positive(label_limit, "label_limit"))
        ).all()

    coarse_a, coarse_b = [0] * bins, [0] * bins
    fine_a, fine_b = [0] * KS_BINS, [0] * KS_BINS
    for coarse, fine, a, b in score_rows:
        coarse_a[coarse] += a
        coarse_b[coarse] += b
        fine_a[fine] += a
        fine_b[fine] += b
    labels = [row[0] for row in label_rows]
    labels_a = [row[1] for row in label_rows] + [count_a - sum(row[1] for row in label_rows)]
    labels_b = [row[2] for row in label_rows] + [count_b - sum(row[2] for row in label_rows)]

    enough = count_a >= min_predictions and count_b >= min_predictions
    confidence_psi = _psi(coarse_a, coarse_b) if count_a and count_b else None
    label_psi = _psi(labels_a, labels_b) if count_a and count_b else None
    ks_statistic, ks_pvalue = _ks_from_histograms(fine_a, fine_b) if count_a and count_b else (None, None)
    confidence_verdict = _psi_verdict(confidence_psi) if enough else NOT_ENOUGH_DATA
    label_verdict = _psi_verdict(label_psi) if enough else NOT_ENOUGH_DATA
    verdict = max(confidence_verdict, label_verdict, key=VERDICTS.index) if enough else NOT_ENOUGH_DATA
    shifts = sorted(
        (
            {"label": label, "share_a": a / count_a, "share_b": b / count_b}
            for label, a, b in zip(labels, labels_a, labels_b)
        )
        if count_a and count_b
        else (),
        key=lambda shift: -abs(shift["share_b"] - shift["share_a"]),
    )
    return DriftReport(
        window_a=_window_text(window_a),
        window_b=_window_text(window_b),
        predictions_a=count_a,
        predictions_b=count_b,
        mean_confidence_a=_float(mean_a),
        mean_confidence_b=_float(mean_b),
        confidence_psi=confidence_psi,
        ks_statistic=ks_statistic,
        ks_pvalue=ks_pvalue,
        label_psi=label_psi,
        confidence_verdict=confidence_verdict,
        label_verdict=label_verdict,
        verdict=verdict,
        drifted=verdict in VERDICTS[1:],
        label_shifts=shifts[:10],
    )


# -- helpers -----------------------------------------------------------------------------------


@contextmanager
def _reading(store: Store, what: str) -> Iterator[sa.Connection]:
    try:
        with store.engine.connect() as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise StoreError(f"Cannot compute {what}: {store.explain(exc)}.") from exc


def _frame(store: Store, what: str, query: sa.Select) -> pd.DataFrame:
    with _reading(store, what) as connection:
        result = connection.execute(query)
        return pd.DataFrame(result.all(), columns=list(result.keys()))


def _with_iso_days(frame: pd.DataFrame) -> pd.DataFrame:
    frame["day"] = [day.isoformat() for day in frame["day"]]
    return frame


def _time_range(start: date | datetime | None, end: date | datetime | None) -> list[sa.ColumnElement[bool]]:
    conditions = []
    if start is not None:
        conditions.append(P.created_at >= as_utc_naive(start))
    if end is not None:
        conditions.append(P.created_at < _exclusive_end(end))
    return conditions


def _exclusive_end(end: date | datetime) -> datetime:
    return as_utc_naive(end) if isinstance(end, datetime) else as_utc_naive(end) + timedelta(days=1)


def _window_text(window: Window) -> tuple[str, str]:
    return as_utc_naive(window[0]).isoformat(), _exclusive_end(window[1]).isoformat()


def _count(conditions: list[sa.ColumnElement[bool]]) -> sa.Select:
    return sa.select(sa.func.count()).select_from(predictions_table).where(*conditions)


def _corrected(feedback) -> sa.ColumnElement[bool]:
    """A feedback row (columns of ``feedback`` or an alias of it) that gives a corrected label or label set."""
    return sa.or_(feedback.corrected_label.is_not(None), feedback.corrected_labels.is_not(None))


def _indicator(condition: sa.ColumnElement[bool]) -> sa.Case:
    return sa.case((condition, 1), else_=0)


def _share(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[float]:
    """Fraction of rows meeting ``condition`` (float literals keep PostgreSQL from returning numeric)."""
    return sa.func.avg(sa.case((condition, 1.0), else_=0.0))


def _score_bin(score: sa.ColumnElement[float], bins: int) -> sa.Case:
    """Bin index of a score in [0, 1]: floor(score * bins), with 1.0 in the last bin."""
    return sa.case((score >= 1.0, bins - 1), else_=_FloorToInt(score * bins))


def _percentiles(
    store: Store,
    connection: sa.Connection,
    column: sa.ColumnElement[float],
    conditions: list[sa.ColumnElement[bool]],
    quantiles: Sequence[float],
    count: int | None = None,
) -> list[float | None]:
    if store.backend == "postgresql":
        row = connection.execute(
            sa.select(*(sa.func.percentile_cont(q).within_group(column) for q in quantiles)).where(*conditions)
        ).one()
        return [_float(value) for value in row]
    if count is None:
        count = connection.scalar(_count(conditions))
    values = []
    for quantile in quantiles:
        if count == 0:
            values.append(None)
            continue
        position = quantile * (count - 1)
        lower = math.floor(position)
        fraction = position - lower
        wanted = 2 if fraction else 1
        # OFFSET steps through the skipped rows, so reach high quantiles from the top end.
        if lower >= count / 2:
            query = sa.select(column).where(*conditions).order_by(column.desc())
            neighbours = connection.scalars(query.limit(wanted).offset(count - lower - wanted)).all()[::-1]
        else:
            neighbours = connection.scalars(
                sa.select(column).where(*conditions).order_by(column).limit(wanted).offset(lower)
            ).all()
        values.append(neighbours[0] + (neighbours[1] - neighbours[0]) * fraction if fraction else neighbours[0])
    return [_float(value) for value in values]


def _psi(expected: Sequence[int], actual: Sequence[int]) -> float:
    total_expected, total_actual = sum(expected), sum(actual)
    psi = 0.0
    for expected_count, actual_count in zip(expected, actual):
        expected_share = max(expected_count / total_expected, PSI_EPSILON)
        actual_share = max(actual_count / total_actual, PSI_EPSILON)
        psi += (actual_share - expected_share) * math.log(actual_share / expected_share)
    return psi


def _psi_verdict(psi: float | None) -> str:
    if psi is None:
        return NOT_ENOUGH_DATA
    return VERDICTS[0] if psi < PSI_MODERATE else VERDICTS[1] if psi < PSI_MAJOR else VERDICTS[2]


def _ks_from_histograms(counts_a: Sequence[int], counts_b: Sequence[int]) -> tuple[float, float]:
    """Two-sample KS statistic from fine histograms, p-value from Smirnov's distribution (as scipy's
    ``ks_2samp(method="asymp")``)."""
    from scipy.stats import kstwo

    total_a, total_b = sum(counts_a), sum(counts_b)
    cumulative_a = cumulative_b = 0
    statistic = 0.0
    for count_a, count_b in zip(counts_a, counts_b):
        cumulative_a += count_a
        cumulative_b += count_b
        statistic = max(statistic, abs(cumulative_a / total_a - cumulative_b / total_b))
    effective_size = round(total_a * total_b / (total_a + total_b))
    return statistic, float(kstwo.sf(statistic, max(effective_size, 1)))


def _positive(value: int, name: str) -> int:
    if int(value) < 1:
        raise StoreError(f"{name} must be at least 1 (got {value!r}).")
    return int(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)

"""The one place that holds Streamlit caches: a predictor per model loads once per process."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import script_runner

from imgrec.core.errors import ImgrecError, StoreError
from imgrec.core.settings import get_settings
from imgrec.inference.predictor import Predictor
from imgrec.inference.service import PredictionLog
from imgrec.predlog.sources import SOURCES
from imgrec.registry import catalog, detector_cards


def _clean_up_after_a_run() -> None:
    """Streamlit's cleanup after every script run, without ``keras.backend.clear_session()``.

    Streamlit clears the Keras session for apps that rebuild models on every run. Ours are built once
    and cached here, and clearing drops TensorFlow's kernel cache, so the first prediction or heatmap
    of every rerun took about 250 ms instead of 20 ms. Matplotlib's cleanup is kept. (Streamlit 1.67
    has no option for this; a test checks the session is no longer cleared.)"""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")


script_runner._clean_problem_modules = _clean_up_after_a_run


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def predictor(name: str, version: str) -> Predictor:
    # Predictor.predict is thread-safe, so one instance serves every session.
    return Predictor.load(name, version, get_settings())


@st.cache_resource(show_spinner=False)
def prediction_log() -> PredictionLog:
    # One per app process; it opens the database on first use and again after a failure.
    return PredictionLog(get_settings(), serving=True)


def store():
    """The open prediction log; ``StoreError`` when it cannot be opened (pages show it as a message)."""
    log = prediction_log()
    opened = log.store()
    if opened is None:
        raise StoreError(log.error)
    return opened


@st.cache_resource(show_spinner="Registering the shipped detectors…")
def stock_detectors(models_dir: str) -> tuple[str, ...]:
    """Register the shipped detectors in ``models_dir`` the first time the app lists models there, as every
    face does on first use; once per process (each costs a checksum, a load and a save, ~1 s, only the
    first time). Without the shared detection folder there is nothing to register. Returns the problems."""
    settings = get_settings()
    if not settings.shared_detection_dir.is_dir():
        return ()
    problems = []
    for name in detector_cards.STOCK_DETECTORS:
        try:
            catalog.ensure_stock_detector(name, settings)
        except ImgrecError as exc:  # a missing or corrupt file: the other models are still listed
            problems.append(str(exc))
    return tuple(problems)


@st.cache_data(ttl=30, show_spinner="Preparing the default model…")
def model_refs() -> list[str]:
    """Every registered model as ``name@version``, the active one first, the shipped detectors included."""
    settings = get_settings()
    active = catalog.active_ref(settings)  # first: it may register the stock default model
    stock_detectors(str(settings.models_dir))
    refs = [card.ref for card in catalog.list_cards(settings)]
    return sorted(refs, key=lambda ref: ref != active)


# -- Analytics: short-lived caches so a page rerun (a widget moved) does not query again ----------

QUERY_TTL = 30  # seconds: fresh enough for a dashboard, cheap enough for a busy log


@st.cache_data(ttl=QUERY_TTL, max_entries=500, show_spinner=False)
def thumbnail(stored_path: str) -> str | None:
    """A kept upload as a small JPEG data URL for the review queue (files are named by content, so a
    path always means the same image); None when it was pruned or cannot be read."""
    import base64
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(store().read_upload(stored_path))) as image:
            image.thumbnail((96, 96))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=80)
    except (OSError, StoreError):
        return None  # pruned or unreadable: the row is still worth reviewing
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
LABEL_OPTIONS = 5000  # most frequent labels offered in the filter: every ImageNet class and then some


@dataclass(frozen=True)
class FilterOptions:
    total: int
    first_day: date
    last_day: date
    models: list[str]
    labels: list[str]
    sources: list[str]


@st.cache_data(ttl=QUERY_TTL, show_spinner=False)
def filter_options() -> FilterOptions:
    from imgrec.predlog import stats  # SQLAlchemy loads only on pages that read the log

    models = stats.by_model(store())
    if models.empty:
        today = datetime.now(UTC).date()
        return FilterOptions(0, today, today, [], [], list(SOURCES))
    labels = stats.by_label(store(), limit=LABEL_OPTIONS)
    return FilterOptions(
        total=int(models["predictions"].sum()),
        first_day=pd.Timestamp(models["first_seen"].min()).date(),
        last_day=pd.Timestamp(models["last_seen"].max()).date(),
        models=[f"{n}@{v}" for n, v in zip(models["model_name"], models["model_version"])],
        labels=sorted(labels["label"]),
        sources=list(SOURCES),
    )


@st.cache_data(ttl=QUERY_TTL, show_spinner=False)
def contents():
    """Which tasks' and sources' rows the log holds (``stats.contents``)."""
    from imgrec.predlog import stats  # SQLAlchemy loads only on pages that read the log

    return stats.contents(store())


@st.cache_data(ttl=QUERY_TTL, show_spinner=False)
def summary(filters, threshold: float):
    from imgrec.predlog import stats  # SQLAlchemy loads only on pages that read the log

    return stats.summary(store(), filters, uncertain_threshold=threshold)


def _query(name: str):
    """A cached wrapper of ``imgrec.predlog.stats.<name>(store, filters, *args)``."""

    def run(filters, *args):
        from imgrec.predlog import stats  # SQLAlchemy loads only on pages that read the log

        return getattr(stats, name)(store(), filters, *args)

    # Streamlit keys a cache by the function's name and source: rename first, so each query has its own.
    run.__name__ = run.__qualname__ = f"cached_{name}"
    return st.cache_data(ttl=QUERY_TTL, show_spinner=False)(run)


by_day = _query("by_day")
detection_score_histogram = _query("detection_score_histogram")
label_co_occurrence = _query("label_co_occurrence")
label_counts = _query("label_counts")
media = _query("media")
objects_over_time = _query("objects_over_time")
objects_per_image = _query("objects_per_image")
videos = _query("videos")
by_label = _query("by_label")
by_model = _query("by_model")
confidence_histogram = _query("confidence_histogram")
latency_over_time = _query("latency_over_time")
over_time = _query("over_time")
recent_windows = _query("recent_windows")
review_queue = _query("review_queue")


@st.cache_data(ttl=QUERY_TTL, show_spinner=False)
def class_names(name: str, version: str) -> list[str]:
    """A logged model's class names, for relabelling; empty when it is no longer registered."""
    try:
        return list(catalog.load_card(name, version, get_settings()).class_names)
    except Exception:  # a deleted or broken model: the page offers the row's own top-k labels instead
        return []


def add_feedback(prediction_id: int, corrected_label: str | None, wrong: bool,
                 corrected_labels: list[str] | None = None) -> None:
    """Store a review (relabel, a corrected label set, or "this is right"), then forget the cached numbers
    it changes."""
    store().add_feedback(prediction_id, corrected_label=corrected_label, wrong=wrong,
                         corrected_labels=corrected_labels)
    for cached in (summary, review_queue, export):
        cached.clear()


@st.cache_data(ttl=QUERY_TTL, show_spinner="Preparing the export…", max_entries=4)
def export(filters, fmt: str) -> bytes:
    from imgrec.predlog.tabular import (  # SQLAlchemy loads only on pages that read the log
        APP_ROW_LIMIT,
        export_predictions,
    )

    return export_predictions(store(), filters, fmt, max_rows=APP_ROW_LIMIT)


@st.cache_data(ttl=QUERY_TTL, show_spinner=False)
def drift(window_a, window_b, filters):
    from imgrec.predlog import stats  # SQLAlchemy loads only on pages that read the log

    return stats.drift(store(), window_a, window_b, filters)

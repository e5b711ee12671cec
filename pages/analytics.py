"""Analytics: KPIs, charts (per task: detections, label sets, videos), a review queue, export and drift over
the prediction log."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from imgrec.core.settings import get_settings
from imgrec.predlog import stats
from imgrec.predlog.tabular import APP_ROW_LIMIT, FORMATS
from ui import analytics_view as view
from ui import cache
from ui.widgets import LOCKED, admin_unlocked, ensure_routed, flash, show_error, show_flash

# Drift compares date windows once the log spans this many days; before, the last N predictions.
DATE_WINDOWS_FROM_DAYS = 14
RECENT_CHOICES = (50, 100, 200, 500, 1000)


def save_review(prediction_id: int, corrected_label: str | None, wrong: bool,
                corrected_labels: list[str] | None = None) -> None:
    try:
        cache.add_feedback(prediction_id, corrected_label, wrong, corrected_labels)
    except Exception as exc:  # a failed write is a message, the queue stays as it was
        show_error(exc)
        return
    if corrected_labels is not None:
        message = (f"Prediction {prediction_id} relabelled as {', '.join(sorted(corrected_labels))}."
                   if corrected_labels else f"Prediction {prediction_id} relabelled: no label is there.")
    elif corrected_label:
        message = f"Prediction {prediction_id} relabelled as {corrected_label}."
    else:
        message = f"Prediction {prediction_id} marked right."
    flash("success", message)
    st.rerun()


ensure_routed()
settings = get_settings()
st.title("Analytics")
st.caption("Every prediction from the app, the API and the CLI. Filters apply to every number, chart and export.")
show_flash()

try:
    options = cache.filter_options()
    contents = cache.contents()
except Exception as exc:  # a broken database is a message, not a traceback
    show_error(exc)
    st.stop()

if options.total == 0:
    st.info("No predictions logged yet. Classify an image on the Predict page and it shows up here.",
            icon=":material/insights:")
    st.stop()

with st.sidebar:
    st.subheader("Filters")
    period = st.date_input("Dates (UTC)", value=(options.first_day, options.last_day), key="analytics.dates",
                           min_value=options.first_day, max_value=options.last_day)
    models = st.multiselect("Models", options.models, key="analytics.models", placeholder="All models")
    labels = st.multiselect("Top-1 labels", options.labels, key="analytics.labels", placeholder="All labels")
    sources = st.multiselect("Sources", options.sources, key="analytics.sources", placeholder="All sources")
    # Only when the log holds that task's rows, like the sections below.
    detected = (st.multiselect("Detected classes", contents.detected_labels, key="analytics.detected",
                               placeholder="Any class", help="Detector predictions with a box of any of these")
                if contents.detected_labels else [])
    in_set = (st.multiselect("Labels found (multi-label)", contents.set_labels, key="analytics.set_labels",
                             placeholder="Any label", help="Multi-label predictions that found any of these")
              if contents.set_labels else [])
    confidence = st.slider("Top-1 confidence", 0.0, 1.0, (0.0, 1.0), 0.05, key="analytics.confidence")
    threshold = st.slider("Uncertain below", 0.0, 1.0, settings.uncertain_threshold, 0.05,
                          key="analytics.threshold")

filters = view.filters_from(period, models, labels, sources, confidence, detected, in_set)
try:
    with st.spinner("Reading the prediction log…"):
        summary = cache.summary(filters, threshold)
except Exception as exc:
    show_error(exc)
    st.stop()

view.kpis(summary)
if summary.predictions == 0:
    st.info("No predictions match these filters.", icon=":material/filter_alt_off:")
    st.stop()

overview, queue_tab, export_tab, drift_tab = st.tabs(
    [":material/bar_chart: Overview", ":material/rule: Review queue", ":material/download: Export",
     ":material/compare_arrows: Drift"]
)
with overview:
    # Hours while the range is short (day one gets more than one bar), days beyond.
    bucket = stats.bucket_for(filters.date_from or options.first_day, filters.date_to or options.last_day)
    with st.spinner("Drawing the charts…"):
        counts, latency = cache.over_time(filters, bucket)
        left, right = st.columns(2)
        left.altair_chart(view.predictions_over_time(counts, bucket), width="stretch")
        right.altair_chart(view.top_labels(cache.by_label(filters)), width="stretch")
        left.altair_chart(view.confidence_histogram(cache.confidence_histogram(filters), threshold), width="stretch")
        right.altair_chart(view.latency_over_time(latency, bucket), width="stretch")
        view.model_table(cache.by_model(filters, threshold))
    if contents.detections:
        st.subheader("Detections")
        with st.spinner("Drawing the detection charts…"):
            st.altair_chart(view.objects_over_time(cache.objects_over_time(filters, bucket), bucket), width="stretch")
            left, right = st.columns(2)
            left.altair_chart(view.objects_per_image(cache.objects_per_image(filters)), width="stretch")
            right.altair_chart(view.detection_scores(cache.detection_score_histogram(filters), threshold),
                               width="stretch")
    if contents.label_sets:
        st.subheader("Label sets")
        counts = cache.label_counts(filters)
        if counts.empty:
            st.info("No multi-label prediction with a label found matches these filters.")
        else:
            left, right = st.columns(2)
            left.altair_chart(view.label_counts(counts), width="stretch")
            right.altair_chart(view.label_co_occurrence(cache.label_co_occurrence(filters)), width="stretch")
    if contents.video_frames:
        st.subheader("Videos")
        view.media(cache.media(filters))
        view.videos_table(cache.videos(filters))

with queue_tab:
    st.caption("Flagged predictions first, then the least confident. Relabel each or mark it right; "
               "reviewed ones leave the list and count as corrections.")
    show_reviewed = st.toggle("Show reviewed ones too", key="analytics.show_reviewed")
    queue = cache.review_queue(filters, threshold, 50, show_reviewed)
    # Reviews change the log: with IMGREC_ADMIN_TOKEN set they wait for the token, like Models and Train.
    may_review = admin_unlocked(settings)
    if not may_review and not queue.empty:
        st.caption(f"Relabelling: {LOCKED}")
    view.review_queue(queue, cache.thumbnail, cache.class_names, save_review if may_review else None,
                      contents.label_set_models)

with export_tab:
    st.caption(f"{summary.predictions:,} filtered predictions, one row each (a detector's: one per box; a "
               "multi-label one lists its label set), with feedback and image metadata.")
    if summary.predictions > APP_ROW_LIMIT:
        st.info(f"A download here holds the oldest {APP_ROW_LIMIT:,} of them. For every row, run "
                "`python -m imgrec log-export predictions.csv` (same filters as options), which streams "
                "to a file.", icon=":material/info:")
    columns = st.columns(len(FORMATS))
    for column, fmt in zip(columns, FORMATS):
        with column:
            key = f"analytics.export.{fmt}"
            # A prepared file remembers its filters: once they change it is stale, so forget it.
            prepared = st.session_state.get(key)
            if prepared is not None and prepared["filters"] != filters:
                del st.session_state[key]
                prepared = None
            if st.button(f"Prepare {fmt.upper()}", key=f"analytics.prepare.{fmt}", icon=":material/table_view:"):
                prepared = st.session_state[key] = {"filters": filters, "data": cache.export(filters, fmt)}
            if prepared is not None:
                st.download_button(f"Download {fmt.upper()}", prepared["data"], file_name=f"predictions.{fmt}",
                                   mime=FORMATS[fmt], key=f"analytics.download.{fmt}", icon=":material/download:")

with drift_tab:
    st.caption("Compare a recent window with a baseline: PSI on confidence and labels, and a KS test on confidence.")
    modes = ["Last predictions", "Date windows"]
    spans_days = (options.last_day - options.first_day).days + 1
    mode = st.radio("Compare", modes, index=int(spans_days >= DATE_WINDOWS_FROM_DAYS), horizontal=True,
                    key="analytics.drift_mode")
    windows = None
    if mode == modes[0]:
        recent = st.select_slider("Recent predictions", RECENT_CHOICES, value=200, key="analytics.drift_recent",
                                  help="The last N predictions against the N before them, however long they took.")
        windows = cache.recent_windows(filters, recent)
        if windows is None:
            st.info("Not enough data: drift needs at least two predictions.", icon=":material/hourglass_empty:")
        else:
            (baseline_start, _), (recent_start, _) = windows
            st.caption(f"Baseline from {baseline_start:%Y-%m-%d %H:%M}, recent from {recent_start:%Y-%m-%d %H:%M} (UTC).")
    else:
        today = options.last_day
        left, right = st.columns(2)
        window_a = left.date_input("Baseline window", (today - timedelta(days=13), today - timedelta(days=7)),
                                   key="analytics.drift_a")
        window_b = right.date_input("Recent window", (today - timedelta(days=6), today), key="analytics.drift_b")
        if len(window_a) == 2 and len(window_b) == 2:
            windows = tuple(window_a), tuple(window_b)
        else:
            st.info("Pick a start and an end date for both windows.")
    if windows is not None:
        try:
            with st.spinner("Comparing the windows…"):
                view.drift(cache.drift(*windows, filters))
        except Exception as exc:
            show_error(exc)

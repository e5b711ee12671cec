"""Display pieces of the Analytics page: KPIs, charts (detections, label sets, videos too), the review queue
and the drift verdict."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence

import altair as alt
import pandas as pd
import streamlit as st

from imgrec.predlog import stats
from ui.charts import PRIMARY, SECONDARY
from ui.widgets import plain

# Counts are whole numbers: no 0.5 ticks on a day with one or two predictions.
COUNT_AXIS = alt.Axis(tickMinStep=1, format="d")
TIME_FORMATS = {"hour": "%d %b %H:00", "day": "%d %b"}
REVIEW_CARDS = 8  # queue rows shown with relabel buttons; the table below lists them all


def filters_from(period, models: list[str], labels: list[str], sources: list[str], confidence,
                 detected_labels: list[str] = (), set_labels: list[str] = ()) -> stats.Filters:
    start, end = (tuple(period) + (None, None))[:2] if isinstance(period, (tuple, list)) else (period, period)
    low, high = confidence
    return stats.Filters(
        date_from=start,
        date_to=end,
        models=sorted(models),  # "name@version": each name with its own version, no cross
        labels=labels,
        sources=sources,
        min_confidence=low if low > 0 else None,
        max_confidence=high if high < 1 else None,
        detected_labels=sorted(detected_labels),
        set_labels=sorted(set_labels),
    )


def kpis(summary: stats.Summary) -> None:
    def pct(value):
        return "—" if value is None else f"{value:.1%}"

    def ms(value):
        return "—" if value is None else f"{value:.0f} ms"

    # Two rows of four: seven in one row cut "Mean top-1 confidence" short.
    first, second = st.columns(4), st.columns(4)
    first[0].metric("Predictions", f"{summary.predictions:,}")
    first[1].metric("Distinct images", f"{summary.distinct_images:,}")
    first[2].metric("Mean top-1 confidence", pct(summary.mean_confidence))
    first[3].metric(f"Uncertain (< {summary.uncertain_threshold:.0%})", pct(summary.uncertain_share))
    second[0].metric("Latency p50", ms(summary.latency_p50_ms))
    second[1].metric("Latency p95", ms(summary.latency_p95_ms))
    second[2].metric("Flagged wrong", f"{summary.flagged:,}")
    second[3].metric("Corrections", f"{summary.corrected + summary.confirmed:,}",
                     help=f"{summary.corrected:,} relabelled, {summary.confirmed:,} marked right in the review queue")


def _counts_over_time(frame: pd.DataFrame, title: str, count: str, colour: str, colour_title: str,
                      bucket: str, legend_columns=alt.Undefined) -> alt.Chart:
    """Stacked bars of ``count`` per time bucket, coloured by ``colour``."""
    return (
        alt.Chart(frame, title=title)
        .mark_bar()
        .encode(
            x=alt.X("time:T", title=None, axis=alt.Axis(format=TIME_FORMATS[bucket], labelOverlap=True)),
            y=alt.Y(f"{count}:Q", title=count, axis=COUNT_AXIS),
            color=alt.Color(f"{colour}:N", title=colour_title,
                            legend=alt.Legend(orient="bottom", columns=legend_columns)),
            tooltip=[alt.Tooltip("time:T", format=TIME_FORMATS[bucket]), f"{colour}:N", f"{count}:Q"],
        )
        .properties(height=260)
    )


def _label_bars(frame: pd.DataFrame, title: str, score: str) -> alt.Chart:
    """One horizontal bar per label, most predicted first; every label shown: a row per label (the chart grows)
    instead of Vega dropping overlapping ones."""
    return (
        alt.Chart(frame, title=title)
        .mark_bar(color=PRIMARY, cornerRadiusEnd=3)
        .encode(
            y=alt.Y("label:N", sort="-x", title=None, axis=alt.Axis(labelLimit=200, labelOverlap=False)),
            x=alt.X("predictions:Q", title="predictions", axis=COUNT_AXIS),
            tooltip=["label:N", "predictions:Q", alt.Tooltip("share:Q", format=".1%"),
                     alt.Tooltip(f"{score}:Q", format=".1%")],
        )
        .properties(height=max(260, 18 * len(frame)))
    )


def _score_histogram(frame: pd.DataFrame, threshold: float, title: str, x_title: str, count: str,
                     y_title: str) -> alt.Chart:
    """Binned scores (``lower``..``upper``), bins at or under ``threshold`` in the "uncertain" colour."""
    frame = frame.assign(verdict=["uncertain" if upper <= threshold else "confident" for upper in frame["upper"]])
    return (
        alt.Chart(frame, title=title)
        .mark_bar()
        .encode(
            x=alt.X("lower:Q", bin="binned", title=x_title, axis=alt.Axis(format="%")),
            x2="upper:Q",
            y=alt.Y(f"{count}:Q", title=y_title, axis=COUNT_AXIS),
            color=alt.Color("verdict:N", scale=alt.Scale(domain=["confident", "uncertain"],
                                                          range=[PRIMARY, SECONDARY]), legend=None),
            tooltip=[alt.Tooltip("lower:Q", format=".0%"), alt.Tooltip("upper:Q", format=".0%"), f"{count}:Q"],
        )
        .properties(height=260)
    )


def predictions_over_time(frame: pd.DataFrame, bucket: str = "day") -> alt.Chart:
    frame = frame.assign(model=frame["model_name"] + "@" + frame["model_version"])
    return _counts_over_time(frame, f"Predictions per {bucket} (UTC), by model", "predictions", "model", "model",
                             bucket)


def top_labels(frame: pd.DataFrame) -> alt.Chart:
    return _label_bars(frame, "Top labels", "mean_confidence")


def confidence_histogram(frame: pd.DataFrame, threshold: float) -> alt.Chart:
    return _score_histogram(frame, threshold, "Top-1 confidence", "confidence", "predictions", "predictions")


def latency_over_time(frame: pd.DataFrame, bucket: str = "day") -> alt.Chart:
    long = frame.melt(id_vars=["time"], value_vars=["p50_latency_ms", "p95_latency_ms"], var_name="percentile",
                      value_name="latency_ms")
    long["percentile"] = long["percentile"].str.replace("_latency_ms", "")
    return (
        alt.Chart(long, title=f"Latency per {bucket} (UTC)")
        .mark_line(point=True)
        .encode(
            x=alt.X("time:T", title=None, axis=alt.Axis(format=TIME_FORMATS[bucket], labelOverlap=True)),
            y=alt.Y("latency_ms:Q", title="ms"),
            color=alt.Color("percentile:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=[alt.Tooltip("time:T", format=TIME_FORMATS[bucket]), "percentile:N",
                     alt.Tooltip("latency_ms:Q", format=".1f")],
        )
        .properties(height=260)
    )


# -- detections --------------------------------------------------------------------------------


def objects_over_time(frame: pd.DataFrame, bucket: str = "day") -> alt.Chart:
    return _counts_over_time(frame, f"Detected objects per {bucket} (UTC), by class", "objects", "label", "class",
                             bucket, legend_columns=4)


def objects_per_image(frame: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(frame, title="Objects per image")
        .mark_bar(color=PRIMARY)
        .encode(
            x=alt.X("objects:O", title="objects found in one image", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("predictions:Q", title="predictions", axis=COUNT_AXIS),
            tooltip=["objects:O", "predictions:Q"],
        )
        .properties(height=260)
    )


def detection_scores(frame: pd.DataFrame, threshold: float) -> alt.Chart:
    return _score_histogram(frame, threshold, "Detection scores (every box)", "score", "objects", "boxes")


# -- label sets --------------------------------------------------------------------------------


def label_counts(frame: pd.DataFrame) -> alt.Chart:
    return _label_bars(frame, "Labels found (multi-label)", "mean_score")


def label_co_occurrence(frame: pd.DataFrame) -> alt.Chart:
    base = alt.Chart(frame).encode(
        x=alt.X("label_a:N", title=None), y=alt.Y("label_b:N", title=None))
    cells = base.mark_rect().encode(
        color=alt.Color("predictions:Q", title="predictions", scale=alt.Scale(scheme="blues"),
                        legend=alt.Legend(format="d", tickMinStep=1)),
        tooltip=["label_a:N", "label_b:N", "predictions:Q"])
    numbers = base.mark_text(baseline="middle").encode(text="predictions:Q")
    return alt.layer(cells, numbers, title="Labels found together").properties(
        height=max(260, 24 * frame["label_a"].nunique()))


# -- video -------------------------------------------------------------------------------------


def media(counts: dict[str, int]) -> None:
    cells = st.columns(3)
    cells[0].metric("Photo predictions", f"{counts['photo_predictions']:,}")
    cells[1].metric("Video frames", f"{counts['frame_predictions']:,}", help="Processed frames logged from videos")
    cells[2].metric("Videos", f"{counts['videos']:,}")


def videos_table(frame: pd.DataFrame) -> None:
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={
            "filename": "video",
            "sha256": st.column_config.TextColumn("video hash", width="small"),
            "model_name": "model",
            "model_version": "version",
            "frames": "frames logged",
            "first_frame": "first frame",
            "last_frame": "last frame",
            "first_time_s": st.column_config.NumberColumn("from", format="%.1f s"),
            "last_time_s": st.column_config.NumberColumn("to", format="%.1f s"),
            "mean_confidence": st.column_config.NumberColumn("mean confidence", format="percent"),
            "top_label": "most frequent label",
            "logged_at": st.column_config.DatetimeColumn("logged (UTC)", format="YYYY-MM-DD HH:mm"),
        },
    )


# -- review queue ------------------------------------------------------------------------------


def thumbnail_url(row, kept_upload: Callable[[str], str | None]) -> str | None:
    """The review thumbnail as a data URL, else one made from the kept upload, else None."""
    if isinstance(row.get("thumbnail"), (bytes, bytearray, memoryview)):
        return "data:image/jpeg;base64," + base64.b64encode(bytes(row["thumbnail"])).decode()
    stored = row.get("stored_path")
    return kept_upload(stored) if isinstance(stored, str) else None


Feedback = Callable[..., None]  # (prediction_id, corrected_label, wrong, corrected_labels=None)


def relabel_cards(frame: pd.DataFrame, class_names: Callable[[str, str], list[str]],
                  on_feedback: Feedback, images: list[str | None], label_set_models: Sequence[str] = ()) -> None:
    """The first rows of the queue, each with "Relabel" (to a chosen class; for a multi-label model, the
    whole set of labels that are there) and "This is right"."""
    for row, image in list(zip(frame.to_dict("records"), images, strict=True))[:REVIEW_CARDS]:
        prediction_id = int(row["prediction_id"])
        with st.container(border=True):
            picture, about, relabel, right = st.columns([1, 3, 3, 1.4], vertical_alignment="center")
            if image:
                picture.image(image, width=72)
            else:
                picture.caption("no image kept")
            name = row.get("filename") or f"image {str(row['sha256'])[:10]}…"
            flag = " · flagged wrong" if row.get("flagged") else ""
            options = class_names(row["model_name"], row["model_version"]) or [p["label"] for p in row["top_k"]]
            if f"{row['model_name']}@{row['model_version']}" in label_set_models:
                found = row.get("label_set") or []
                about.markdown(f"**{plain(name)}**  \n{plain(', '.join(found)) or 'no label found'} · "
                               f"{plain(row['model_name'])}@{plain(row['model_version'])}{flag}")
                chosen = relabel.multiselect("Labels that are there", options, default=[o for o in found if o in options],
                                             key=f"analytics.relabel_set.{prediction_id}",
                                             label_visibility="collapsed", placeholder="No label is there")
                if relabel.button("Save labels", key=f"analytics.relabel_save.{prediction_id}",
                                  disabled=sorted(chosen) == sorted(found), icon=":material/edit:"):
                    on_feedback(prediction_id, None, True, corrected_labels=chosen)
                if right.button("This is right", key=f"analytics.right.{prediction_id}", icon=":material/check:"):
                    on_feedback(prediction_id, None, False)
                continue
            about.markdown(f"**{plain(name)}**  \n{plain(row['top1_label'])} {row['top1_score']:.0%} · "
                           f"{plain(row['model_name'])}@{plain(row['model_version'])}{flag}")
            choice = relabel.selectbox("Correct label", options, index=None, placeholder="Correct label…",
                                       key=f"analytics.relabel.{prediction_id}", label_visibility="collapsed")
            if relabel.button("Relabel", key=f"analytics.relabel_save.{prediction_id}", disabled=choice is None,
                              icon=":material/edit:"):
                on_feedback(prediction_id, choice, True)
            if right.button("This is right", key=f"analytics.right.{prediction_id}", icon=":material/check:"):
                on_feedback(prediction_id, None, False)


def review_queue(frame: pd.DataFrame, thumbnail: Callable[[str], str | None],
                 class_names: Callable[[str, str], list[str]] | None = None,
                 on_feedback: Feedback | None = None, label_set_models: Sequence[str] = ()) -> None:
    if frame.empty:
        st.info("Nothing to review: no flagged or low-confidence predictions match the filters.",
                icon=":material/done_all:")
        return
    images = [thumbnail_url(row, thumbnail) for row in frame.to_dict("records")]
    if class_names is not None and on_feedback is not None:
        relabel_cards(frame, class_names, on_feedback, images, label_set_models)
    frame = frame.assign(thumbnail=images)
    columns = ["thumbnail", "filename", "created_at", "top1_label", "top1_score", "review_score", "label_set", "flagged",
               "corrected_label", "corrected_labels", "note", "model_name", "model_version", "source", "sha256"]
    st.dataframe(
        frame[[c for c in columns if c in frame.columns]],
        hide_index=True,
        width="stretch",
        column_config={
            "thumbnail": st.column_config.ImageColumn("image", help="A small copy is kept of each uncertain image "
                                                                   "(for the upload retention period)"),
            "filename": "file",
            "created_at": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm"),
            "top1_label": "top-1",
            "top1_score": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="percent"),
            "review_score": st.column_config.ProgressColumn("least sure part", min_value=0.0, max_value=1.0,
                                                            format="percent",
                                                            help="The lowest box or label score, else the top-1"),
            "label_set": st.column_config.ListColumn("labels found"),
            "corrected_label": "corrected to",
            "corrected_labels": st.column_config.ListColumn("labels corrected to"),
            "sha256": st.column_config.TextColumn("image hash", width="small"),
        },
    )


def drift(report: stats.DriftReport) -> None:
    message = (f"**{report.verdict}** — confidence: {report.confidence_verdict}; labels: {report.label_verdict}. "
               f"{report.predictions_a:,} baseline vs {report.predictions_b:,} recent predictions.")
    if report.drifted:
        st.warning(message, icon=":material/trending_up:")
    elif report.verdict == stats.NOT_ENOUGH_DATA:  # no verdict, so nothing to celebrate
        st.info(message, icon=":material/hourglass_empty:")
    else:
        st.success(message, icon=":material/check_circle:")

    def number(value, fmt):
        return "—" if value is None else format(value, fmt)

    cells = st.columns(4)
    cells[0].metric("Confidence PSI", number(report.confidence_psi, ".3f"), help="< 0.1 stable, 0.1–0.25 moderate, > 0.25 major")
    cells[1].metric("KS statistic", number(report.ks_statistic, ".3f"))
    cells[2].metric("KS p-value", number(report.ks_pvalue, ".3g"))
    cells[3].metric("Label PSI", number(report.label_psi, ".3f"))
    if report.label_shifts:
        st.dataframe(pd.DataFrame(report.label_shifts), hide_index=True, width="stretch",
                     column_config={"share_a": st.column_config.NumberColumn("baseline share", format="percent"),
                                    "share_b": st.column_config.NumberColumn("recent share", format="percent")})


def model_table(frame: pd.DataFrame) -> None:
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={
            "model_name": "model",
            "model_version": "version",
            "distinct_images": "distinct images",
            "mean_confidence": st.column_config.NumberColumn("mean confidence", format="percent"),
            "mean_latency_ms": st.column_config.NumberColumn("mean latency", format="%.1f ms"),
            "uncertain_share": st.column_config.NumberColumn("uncertain", format="percent"),
            "first_seen": st.column_config.DatetimeColumn("first seen (UTC)", format="YYYY-MM-DD HH:mm"),
            "last_seen": st.column_config.DatetimeColumn("last seen (UTC)", format="YYYY-MM-DD HH:mm"),
        },
    )

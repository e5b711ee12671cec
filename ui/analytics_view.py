"""Display pieces of the Analytics page: KPIs, charts, the review queue and the drift verdict."""

from __future__ import annotations

from collections.abc import Callable

import altair as alt
import pandas as pd
import streamlit as st

from imgrec.predlog import stats
from ui.charts import PRIMARY, SECONDARY


def filters_from(period, models: list[str], labels: list[str], sources: list[str], confidence) -> stats.Filters:
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
    )


def kpis(summary: stats.Summary) -> None:
    def pct(value):
        return "—" if value is None else f"{value:.1%}"

    def ms(value):
        return "—" if value is None else f"{value:.0f} ms"

    cells = st.columns(7)
    cells[0].metric("Predictions", f"{summary.predictions:,}")
    cells[1].metric("Distinct images", f"{summary.distinct_images:,}")
    cells[2].metric("Mean top-1 confidence", pct(summary.mean_confidence))
    cells[3].metric("Latency p50", ms(summary.latency_p50_ms))
    cells[4].metric("Latency p95", ms(summary.latency_p95_ms))
    cells[5].metric(f"Uncertain (< {summary.uncertain_threshold:.0%})", pct(summary.uncertain_share))
    cells[6].metric("Flagged wrong", f"{summary.flagged:,}")


def predictions_over_time(frame: pd.DataFrame) -> alt.Chart:
    frame = frame.assign(model=frame["model_name"] + "@" + frame["model_version"])
    return (
        alt.Chart(frame, title="Predictions per day, by model")
        .mark_bar()
        .encode(
            x=alt.X("day:T", title=None),
            y=alt.Y("predictions:Q", title="predictions"),
            color=alt.Color("model:N", title="model", legend=alt.Legend(orient="bottom")),
            tooltip=["day:T", "model:N", "predictions:Q"],
        )
        .properties(height=260)
    )


def top_labels(frame: pd.DataFrame) -> alt.Chart:
    return (
        alt.Chart(frame, title="Top labels")
        .mark_bar(color=PRIMARY, cornerRadiusEnd=3)
        .encode(
            y=alt.Y("label:N", sort="-x", title=None, axis=alt.Axis(labelLimit=200)),
            x=alt.X("predictions:Q", title="predictions"),
            tooltip=["label:N", "predictions:Q", alt.Tooltip("share:Q", format=".1%"),
                     alt.Tooltip("mean_confidence:Q", format=".1%")],
        )
        .properties(height=260)
    )


def confidence_histogram(frame: pd.DataFrame, threshold: float) -> alt.Chart:
    frame = frame.assign(verdict=["uncertain" if upper <= threshold else "confident" for upper in frame["upper"]])
    bars = (
        alt.Chart(frame, title="Top-1 confidence")
        .mark_bar()
        .encode(
            x=alt.X("lower:Q", bin="binned", title="confidence", axis=alt.Axis(format="%")),
            x2="upper:Q",
            y=alt.Y("predictions:Q", title="predictions"),
            color=alt.Color("verdict:N", scale=alt.Scale(domain=["confident", "uncertain"],
                                                          range=[PRIMARY, SECONDARY]), legend=None),
            tooltip=[alt.Tooltip("lower:Q", format=".0%"), alt.Tooltip("upper:Q", format=".0%"), "predictions:Q"],
        )
    )
    return bars.properties(height=260)


def latency_over_time(frame: pd.DataFrame) -> alt.Chart:
    long = frame.melt(id_vars=["day"], value_vars=["p50_latency_ms", "p95_latency_ms"], var_name="percentile",
                      value_name="latency_ms")
    long["percentile"] = long["percentile"].str.replace("_latency_ms", "")
    return (
        alt.Chart(long, title="Latency per day")
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title=None),
            y=alt.Y("latency_ms:Q", title="ms"),
            color=alt.Color("percentile:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=["day:T", "percentile:N", alt.Tooltip("latency_ms:Q", format=".1f")],
        )
        .properties(height=260)
    )


def review_queue(frame: pd.DataFrame, thumbnail: Callable[[str], str | None]) -> None:
    if frame.empty:
        st.success("Nothing to review: no flagged or low-confidence predictions match the filters.")
        return
    frame = frame.assign(thumbnail=[thumbnail(p) if isinstance(p, str) else None for p in frame["stored_path"]])
    columns = ["thumbnail", "created_at", "top1_label", "top1_score", "flagged", "corrected_label", "note",
               "model_name", "model_version", "source", "sha256"]
    st.dataframe(
        frame[[c for c in columns if c in frame.columns]],
        hide_index=True,
        width="stretch",
        column_config={
            "thumbnail": st.column_config.ImageColumn("image", help="Kept only when IMGREC_KEEP_UPLOADS is on"),
            "created_at": st.column_config.DatetimeColumn("time (UTC)", format="YYYY-MM-DD HH:mm"),
            "top1_label": "top-1",
            "top1_score": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="percent"),
            "corrected_label": "corrected to",
            "sha256": st.column_config.TextColumn("image hash", width="small"),
        },
    )


def drift(report: stats.DriftReport) -> None:
    message = (f"**{report.verdict}** — confidence: {report.confidence_verdict}; labels: {report.label_verdict}. "
               f"{report.predictions_a:,} baseline vs {report.predictions_b:,} recent predictions.")
    if report.drifted:
        st.warning(message, icon=":material/trending_up:")
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

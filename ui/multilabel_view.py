"""Multi-label views: one result (the labels found, every score against its own threshold, "no label found") and
the evaluation report (mAP, micro/macro F1, per-class P/R/AP with thresholds, PR curves, label co-occurrence)."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from imgrec.tasks.base import Verdict
from imgrec.tasks.multilabel import LabelSet, MultiLabelTask
from imgrec.tasks.multilabel_metrics import MultiLabelReport
from ui.charts import PRIMARY, SECONDARY
from ui.widgets import plain

TASK = MultiLabelTask()


def label_scores_chart(result: LabelSet) -> alt.Chart:
    """Every label's score as a bar, found labels in the main colour, each with a tick at its own threshold."""
    frame = pd.DataFrame({
        "label": [item.label for item in result.labels],
        "score": [item.score for item in result.labels],
        "threshold": [item.threshold for item in result.labels],
        "found": ["found" if item.present else "below its threshold" for item in result.labels],
    })
    base = alt.Chart(frame).encode(
        y=alt.Y("label:N", sort=list(frame["label"]), title=None, axis=alt.Axis(labelLimit=220, labelOverlap=False)),
        tooltip=[alt.Tooltip("label:N"), alt.Tooltip("score:Q", format=".2%"),
                 alt.Tooltip("threshold:Q", format=".2%")],
    )
    bars = base.mark_bar(cornerRadiusEnd=3).encode(
        x=alt.X("score:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="score"),
        color=alt.Color("found:N", scale=alt.Scale(domain=["found", "below its threshold"],
                                                   range=[PRIMARY, SECONDARY]), legend=alt.Legend(orient="top", title=None)),
    )
    ticks = base.mark_tick(color="#111827", thickness=2, size=26).encode(x="threshold:Q")
    return (bars + ticks).properties(height=alt.Step(30))


def show_result(result: LabelSet, verdict: Verdict | None = None) -> None:
    """The labels found (or "no label found": ``verdict``, the task's own by default) above every label's
    score against its threshold."""
    verdict = verdict or TASK.verdict(result, threshold=0.0)
    if verdict.kind == "none":
        st.warning(plain(verdict.text))
    else:
        st.success(plain("Labels found: " + verdict.text))
    st.altair_chart(label_scores_chart(result), use_container_width=True)
    st.caption("Each label has its own decision threshold (the black tick), tuned on the validation split.")


def pick_label(result: LabelSet, key: str) -> str:
    """The label Grad-CAM explains: any of the model's labels, the best-scoring first."""
    return st.selectbox("Explain label", [item.label for item in result.labels], key=key,
                        format_func=lambda name: name + (" (found)" if any(
                            item.label == name and item.present for item in result.labels) else ""))


def per_class_frame(report: MultiLabelReport) -> pd.DataFrame:
    return pd.DataFrame([{"class": row["class"], "threshold": row["threshold"], "precision": row["precision"],
                          "recall": row["recall"], "F1": row["f1"], "AP": row["average_precision"],
                          "images": row["support"]} for row in report.per_class])


def pr_curves_chart(report: MultiLabelReport, classes: list[str]) -> alt.Chart:
    rows = [{"class": name, "recall": r, "precision": p}
            for name in classes for r, p in zip(report.pr_curves[name]["recall"], report.pr_curves[name]["precision"])]
    return alt.Chart(pd.DataFrame(rows, columns=["class", "recall", "precision"])).mark_line().encode(
        x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("precision:Q", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("class:N", legend=alt.Legend(orient="right")),
        tooltip=["class:N", alt.Tooltip("recall:Q", format=".2f"), alt.Tooltip("precision:Q", format=".3f")],
    ).properties(height=320)


def cooccurrence_chart(report: MultiLabelReport, predicted: bool = False) -> alt.Chart:
    """Images holding both labels (the diagonal: images holding the label)."""
    matrix = report.predicted_cooccurrence if predicted else report.cooccurrence
    rows = [{"label": a, "with": b, "images": int(matrix[i][j])}
            for i, a in enumerate(report.class_names) for j, b in enumerate(report.class_names)]
    order = list(report.class_names)
    base = alt.Chart(pd.DataFrame(rows)).encode(
        x=alt.X("with:N", sort=order, title=None), y=alt.Y("label:N", sort=order, title=None),
        tooltip=["label:N", "with:N", "images:Q"],
    )
    heat = base.mark_rect().encode(color=alt.Color("images:Q", scale=alt.Scale(scheme="blues"), legend=None))
    text = base.mark_text(fontSize=11).encode(text="images:Q")
    return (heat + text).properties(height=alt.Step(28), width=alt.Step(40))


def show_report(report: MultiLabelReport, key: str) -> None:
    """The evaluation report of a multi-label model (``key`` prefixes the widget keys)."""
    cols = st.columns(5)
    cols[0].metric("mAP", f"{report.mean_average_precision:.3f}")
    cols[1].metric("Micro F1", f"{report.micro_f1:.3f}")
    cols[2].metric("Macro F1", f"{report.macro_f1:.3f}")
    cols[3].metric("Subset accuracy", f"{report.subset_accuracy:.1%}")
    cols[4].metric("Hamming loss", f"{report.hamming_loss:.3f}")
    st.caption(f"{report.samples} images of the {report.split} split; F1s at the per-class thresholds"
               + (f" tuned on the {report.thresholds_from} split." if report.thresholds_from == "val" else "."))
    st.dataframe(per_class_frame(report), hide_index=True, width="stretch",
                 column_config={name: st.column_config.NumberColumn(format="%.3f")
                                for name in ("threshold", "precision", "recall", "F1", "AP")})
    classes = st.multiselect("PR curves of", list(report.class_names), default=list(report.class_names)[:5],
                             key=f"{key}.pr")
    if classes:
        st.altair_chart(pr_curves_chart(report, classes), width="stretch")
    predicted = st.toggle("Co-occurrence of the predicted sets (else the true ones)", key=f"{key}.cooc")
    st.altair_chart(cooccurrence_chart(report, predicted), width="content")

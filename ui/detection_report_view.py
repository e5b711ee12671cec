"""A detector's evaluation report (``imgrec evaluate``): mAP headline, per-class AP table and PR curves at IoU 0.5.

Presentation only: every number comes from the saved :class:`imgrec.tasks.detection_metrics.DetectionReport`.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from imgrec.core.settings import Settings
from imgrec.registry import catalog
from imgrec.registry.card import ModelCard
from imgrec.tasks.detection_metrics import DETECTION_REPORT, DetectionReport
from ui.widgets import plain

MAX_CURVES_SHOWN = 8  # by default, the classes with the most boxes; the multiselect picks any


def report_path(card: ModelCard, settings: Settings):
    return catalog.model_dir(card.name, card.version, settings) / DETECTION_REPORT


def has_detection_report(card: ModelCard, settings: Settings) -> bool:
    return report_path(card, settings).is_file()


def detection_report_panel(card: ModelCard, settings: Settings, key: str = "models") -> None:
    """The report saved beside ``card``'s model, or a note on how to make one."""
    path = report_path(card, settings)
    if not path.is_file():
        st.info(f"{plain(card.ref)} has no detection report yet. Make one with "
                f"`python -m imgrec evaluate {card.ref} --dataset PATH` (COCO JSON, Pascal VOC or YOLO layout).")
        return
    try:
        report = DetectionReport.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        st.warning(f"The detection report of {plain(card.ref)} cannot be read ({plain(exc)}). "
                   f"Expected the JSON that `imgrec evaluate` writes; run it again.")
        return
    render_detection_report(report, key=f"{key}.{card.ref}")


def render_detection_report(report: DetectionReport, key: str = "detection") -> None:
    """Headline metrics, the per-class AP table and the precision-recall curves at IoU 0.5."""
    rule = "best class per box" if report.best_class_only else "every class over the threshold per box"
    st.markdown(f"#### Detection evaluation on {plain(report.dataset)}")
    st.caption(f"{report.images} images · score ≥ {report.score_threshold} · {rule} · pycocotools COCOeval · "
               f"{plain(report.created)}")
    cols = st.columns(3)
    cols[0].metric("mAP@[.5:.95]", f"{report.map_50_95:.3f}", help="COCO's AP, averaged over IoU 0.50 to 0.95")
    cols[1].metric("mAP@0.5", f"{report.map_50:.3f}", help="AP at IoU 0.5 (the PASCAL VOC criterion)")
    cols[2].metric("mAP@0.75", f"{report.map_75:.3f}")
    table_col, curve_col = st.columns([1, 1.3], gap="large")
    with table_col:
        st.dataframe(per_class_frame(report), hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("AP", "AP50")})
    with curve_col:
        by_boxes = [row.label for row in sorted(report.per_class, key=lambda row: -row.ground_truth)]
        chosen = st.multiselect("Classes", by_boxes, default=by_boxes[:MAX_CURVES_SHOWN], key=f"{key}.classes")
        if chosen:
            st.altair_chart(pr_curves_chart(report, chosen), width="stretch")
    for note in report.notes:
        st.caption(f"Note: {plain(note)}")


def per_class_frame(report: DetectionReport) -> pd.DataFrame:
    return pd.DataFrame([{"class": row.label, "AP": row.ap, "AP50": row.ap50, "boxes": row.ground_truth,
                          "detections": row.detections} for row in report.per_class])


def pr_curves_frame(report: DetectionReport, labels: list[str]) -> pd.DataFrame:
    """Long form (class, recall, precision); COCO's -1 (a class without ground truth) is left out."""
    rows = [{"class": label, "recall": recall, "precision": precision}
            for label in labels
            for recall, precision in zip(report.pr_curves[label]["recall"], report.pr_curves[label]["precision"])
            if precision >= 0]
    return pd.DataFrame(rows, columns=["class", "recall", "precision"])


def pr_curves_chart(report: DetectionReport, labels: list[str]) -> alt.Chart:
    return (
        alt.Chart(pr_curves_frame(report, labels), title="Precision–recall at IoU 0.5")
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1]), title="recall"),
            y=alt.Y("precision:Q", scale=alt.Scale(domain=[0, 1]), title="precision"),
            color=alt.Color("class:N", title=None, legend=alt.Legend(orient="bottom")),
            tooltip=["class:N", alt.Tooltip("recall:Q", format=".2f"), alt.Tooltip("precision:Q", format=".3f")],
        )
        .properties(height=300)
    )

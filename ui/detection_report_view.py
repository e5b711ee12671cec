"""A detector's evaluation report (``imgrec evaluate``): mAP headline, per-class AP table and PR curves at IoU 0.5,
and the form that runs that evaluation from the page.

Presentation only: every number comes from the saved :class:`imgrec.tasks.detection_metrics.DetectionReport`,
read through the task (``report_from_dict``), and the evaluation is ``imgrec.inference.detection_evaluation``'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from imgrec.core.settings import Settings
from imgrec.datasets.detection import FORMATS
from imgrec.inference.detection_evaluation import DEFAULT_EVALUATION_THRESHOLD, evaluate_registered_detector
from imgrec.registry import catalog
from imgrec.registry.card import ModelCard
from imgrec.tasks.detection_metrics import DETECTION_REPORT, DetectionReport
from imgrec.tasks.registry import task_for
from ui.widgets import LOCKED, flash, plain, show_error

MAX_CURVES_SHOWN = 8  # by default, the classes with the most boxes; the multiselect picks any
DETECTED_FORMAT = "detected from the path"
FORMAT_NAMES = {DETECTED_FORMAT: "Detect from the path", "coco": "COCO JSON", "voc": "Pascal VOC XML",
                "yolo": "YOLO txt"}


def report_path(card: ModelCard, settings: Settings):
    return catalog.model_dir(card.name, card.version, settings) / DETECTION_REPORT


def has_detection_report(card: ModelCard, settings: Settings) -> bool:
    return report_path(card, settings).is_file()


def detection_report_panel(card: ModelCard, settings: Settings, key: str = "models") -> None:
    """The report saved beside ``card``'s model, or a note on how to make one."""
    path = report_path(card, settings)
    if not path.is_file():
        st.info(f"{plain(card.ref)} has no detection report yet. Make one below, or with "
                f"`python -m imgrec evaluate {card.ref} --dataset PATH` (COCO JSON, Pascal VOC or YOLO layout).")
        return
    try:
        report = read_detection_report(card, settings)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        st.warning(f"The detection report of {plain(card.ref)} cannot be read ({plain(exc)}). "
                   f"Expected the JSON that `imgrec evaluate` writes; run it again.")
        return
    render_detection_report(report, key=f"{key}.{card.ref}")


def read_detection_report(card: ModelCard, settings: Settings) -> DetectionReport:
    """The saved report, read back by the detector's task."""
    return task_for(card).report_from_dict(json.loads(report_path(card, settings).read_text()))


def saved_map(card: ModelCard, settings: Settings) -> float | None:
    """The mAP@[.5:.95] of the saved report (the leaderboard's score for a detector), or None without one."""
    if not has_detection_report(card, settings):
        return None
    try:
        return read_detection_report(card, settings).map_50_95
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the Evaluation tab says why it cannot be read


def evaluation_form(card: ModelCard, settings: Settings, unlocked: bool, key: str = "models") -> None:
    """Evaluate ``card``'s detector on a COCO/VOC/YOLO dataset from the page, with a progress bar; the report is
    saved beside the model (as `imgrec evaluate` does) and shown after a rerun."""
    with st.form(f"{key}.detection_eval", border=True):
        st.markdown("**Evaluate on a detection dataset**")
        dataset = st.text_input("Dataset path", key=f"{key}.detection_eval.path",
                                placeholder="annotations.json (COCO), or a Pascal VOC or YOLO folder")
        chosen_format = st.selectbox("Layout", [DETECTED_FORMAT, *FORMATS], format_func=FORMAT_NAMES.get,
                                     key=f"{key}.detection_eval.format")
        threshold = st.number_input("Score threshold", 0.001, 1.0, DEFAULT_EVALUATION_THRESHOLD, step=0.01,
                                    format="%.3f", key=f"{key}.detection_eval.threshold",
                                    help="Low, as COCO evaluates, so the precision–recall curve reaches far.")
        best_class_only = st.toggle("Only each box's best class", key=f"{key}.detection_eval.best",
                                    help="Off: every class over the threshold, as predictions are served.")
        run = st.form_submit_button("Run the evaluation", icon=":material/play_arrow:", type="primary",
                                    disabled=not unlocked, help=None if unlocked else LOCKED)
    if not run:
        return
    if not dataset.strip():
        st.warning("Enter a dataset path: a COCO JSON file, or a Pascal VOC or YOLO folder.",
                   icon=":material/warning:")
        return
    bar = st.progress(0.0, text="Loading the detector and the dataset…")

    def progress(done: int, total: int) -> None:
        bar.progress(done / total if total else 1.0, text=f"{done}/{total} images")

    try:
        report, _path = evaluate_registered_detector(
            card.ref, Path(dataset.strip()).expanduser(), settings,
            format=None if chosen_format == DETECTED_FORMAT else chosen_format, score_threshold=float(threshold),
            best_class_only=bool(best_class_only), progress=progress)
    except Exception as exc:  # a wrong path or layout becomes a message naming what was expected
        bar.empty()
        show_error(exc)
        return
    flash("success", f"Evaluated {card.ref} on {report.images} images: mAP@[.5:.95] {report.map_50_95:.3f}, "
                     f"mAP@0.5 {report.map_50:.3f}.")
    st.rerun()


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

"""The Predict page's view of a classifier: top-k in the sidebar; per image the original, the
Grad-CAM overlay (optionally with the box it implies) and the heatmap, the task's verdict, the top-k chart, details."""

from __future__ import annotations

import streamlit as st

from imgrec.core.settings import get_settings
from imgrec.tasks.base import DecodeOptions
from ui import explain_view, predict_verdict
from ui.charts import top_k_bars
from ui.explain_view import CamControls
from ui.predict_state import kept_widget
from ui.widgets import plain

MAX_TOP_K = 10
USES_THRESHOLD = True  # the verdict weighs the calibrated best score against the page's threshold
TOP_K = "predict.top_k"


def sidebar_options(card) -> DecodeOptions:
    """Decoded with the largest top-k, so moving the slider only re-ranks, never re-predicts."""
    kept_widget(st.slider, "Top-k", 1, MAX_TOP_K, key=TOP_K, default=get_settings().default_top_k)
    return DecodeOptions(top_k=MAX_TOP_K)


def cam_options(controls: CamControls) -> CamControls:
    return explain_view.box_option(controls)


def show(predictor, model_ref: str, image_key: str, item, result, threshold: float, controls: CamControls,
         refs) -> None:
    predictions = result.predictions[: st.session_state[TOP_K]]
    verdict = predictor.task.verdict(result, threshold)
    images_col, chart_col = st.columns([3, 1.3], gap="medium")
    with images_col:
        # original | overlay | heatmap, with the class picker and the download under them
        image_col, overlay_col, heatmap_col = st.columns(3, gap="small")
        image_col.image(item.image.pixels, caption=f"{item.image.width}×{item.image.height} {item.image.format}",
                        width="stretch")
        labels = [p.label for p in predictions]
        explained = explain_view.overlay_panel(
            predictor, model_ref, image_key, item,
            lambda: kept_widget(st.selectbox, "Explain class", key=explain_view.target_key(image_key),
                                default=labels[0], options=labels),
            controls, overlay_col, heatmap_col)
    with chart_col:
        predict_verdict.show(verdict)
        st.altair_chart(top_k_bars(predictions, result.calibrated_scores(predictions), threshold), width="stretch")
        st.caption(f"{plain(item.card.ref)} · {result.latency_ms:.0f} ms")
    if explained is not None:
        explain_view.details(predictor, model_ref, image_key, item, *explained, controls, refs)
    explain_view.feedback(image_key, item, predictor.card.class_names)

"""The Predict page's view of a multi-label model: per image the original, the Grad-CAM overlay of the label
picked and its heatmap, the labels found (or "no label found") with every score against its own threshold,
then faithfulness and the compare mode."""

from __future__ import annotations

import streamlit as st

from imgrec.tasks.base import DecodeOptions
from ui import explain_view, multilabel_view
from ui.explain_view import CamControls
from ui.widgets import plain

USES_THRESHOLD = False  # each label has its own threshold in the card


def sidebar_options(card) -> DecodeOptions:
    return DecodeOptions()  # every label is decoded against its card threshold: nothing to choose


def cam_options(controls: CamControls) -> CamControls:
    return explain_view.box_option(controls)


def show(predictor, model_ref: str, image_key: str, item, result, threshold: float, controls: CamControls,
         refs) -> None:
    verdict = predictor.task.verdict(result, threshold)
    images_col, labels_col = st.columns([3, 1.3], gap="medium")
    with images_col:
        image_col, overlay_col, heatmap_col = st.columns(3, gap="small")
        image_col.image(item.image.pixels, caption=f"{item.image.width}×{item.image.height} {item.image.format}",
                        width="stretch")
        explained = explain_view.overlay_panel(
            predictor, model_ref, image_key, item,
            lambda: multilabel_view.pick_label(result, explain_view.target_key(image_key)),
            controls, overlay_col, heatmap_col)
    with labels_col:
        multilabel_view.show_result(result, verdict)
        st.caption(f"{plain(item.card.ref)} · {result.latency_ms:.0f} ms")
    if explained is not None:
        explain_view.details(predictor, model_ref, image_key, item, *explained, controls, refs)
    explain_view.feedback(image_key, item, predictor.card.class_names)

"""The Predict page's view of a detector: threshold sliders and a class filter in the sidebar; per image
the boxes drawn with class-coloured tags, a per-class count table, the boxes table, and Grad-CAM of the box
chosen with its faithfulness and the compare mode."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import streamlit as st

from imgrec.core.drawing import draw_boxes
from imgrec.explain import render
from imgrec.tasks.base import DecodeOptions
from imgrec.tasks.detection import Detections, decoding_defaults
from ui import explain_view, predict_verdict
from ui.explain_view import METHOD_TITLES, CamControls
from ui.predict_state import kept_widget
from ui.widgets import plain, show_error

USES_THRESHOLD = True  # the verdict weighs the best box's score against the page's threshold


def sidebar_options(card) -> DecodeOptions:
    """Score and IoU thresholds (each model's own, starting at its card's defaults) and a class filter."""
    default_score, default_iou, _ = decoding_defaults(card)
    st.subheader("Detection")
    score = kept_widget(st.slider, "Score threshold", 0.05, 1.0, step=0.05, key=f"predict.score.{card.ref}",
                        default=round(default_score, 2), help="Boxes scoring below this are left out.")
    iou = kept_widget(st.slider, "IoU threshold (NMS)", 0.05, 1.0, step=0.05, key=f"predict.iou.{card.ref}",
                      default=round(default_iou, 2),
                      help="Of two boxes of one class overlapping more than this, only the better one stays.")
    classes = kept_widget(st.multiselect, "Classes", key=f"predict.classes.{card.ref}", default=[],
                          options=list(card.class_names), placeholder="All classes")
    return DecodeOptions(score_threshold=score, iou_threshold=iou, classes=tuple(classes) or None)


def cam_options(controls: CamControls) -> CamControls:
    return controls  # a detector's boxes are its own: no box from the heatmap


def box_label(result: Detections, index: int) -> str:
    detection = result.detections[index]
    return f"#{index + 1} {detection.label} {detection.score:.0%}"


def counts_table(result: Detections) -> pd.DataFrame:
    counts = Counter(d.label for d in result.detections)
    return pd.DataFrame({"class": list(counts), "count": list(counts.values())})


def boxes_table(result: Detections) -> pd.DataFrame:
    return pd.DataFrame({
        "#": range(1, len(result.detections) + 1),
        "class": [d.label for d in result.detections],
        "score": [round(d.score, 4) for d in result.detections],
        **{name: [round(d.box[i]) for d in result.detections] for i, name in enumerate(("x1", "y1", "x2", "y2"))},
    })


def show(predictor, model_ref: str, image_key: str, item, result: Detections, threshold: float,
         controls: CamControls, refs) -> None:
    """One image's detections: boxes | Grad-CAM of the chosen box, then the tables and details."""
    pixels = item.image.pixels
    verdict = predictor.task.verdict(result, threshold)
    boxes_col, cam_col, side_col = st.columns([2, 2, 1.3], gap="medium")
    with side_col:
        predict_verdict.show(verdict, none_title="No objects found")
        if result.detections:
            st.dataframe(counts_table(result), hide_index=True, width="stretch", key=f"predict.counts.{image_key}")
        st.caption(f"{plain(item.card.ref)} · {result.latency_ms:.0f} ms")
    chosen = None
    if result.detections and controls.enabled:
        with side_col:  # the first box again when a threshold change leaves fewer
            chosen = kept_widget(st.selectbox, "Explain box", key=f"predict.box.{image_key}", default=0,
                                 options=range(len(result.detections)), format_func=lambda i: box_label(result, i))
    boxes_col.image(draw_boxes(pixels, result.detections, selected=chosen),
                    caption=f"{len(result.detections)} object(s) · {item.image.width}×{item.image.height} "
                            f"{item.image.format}", width="stretch")
    if result.detections:
        with st.expander(f"Boxes ({len(result.detections)})"):
            st.dataframe(boxes_table(result), hide_index=True, width="stretch", key=f"predict.boxes.{image_key}")
    if chosen is None:
        cam_col.caption("Heatmaps are off (sidebar)." if not controls.enabled else "No box to explain.")
        return
    try:
        explained = explain_view.target(predictor, result, str(chosen))
        with cam_col:
            shown = explain_view.heatmap(predictor, model_ref, image_key, pixels, controls.method, controls.layer,
                                         explained)
        blended = render.overlay(pixels, shown.values, alpha=controls.opacity, colormap=controls.colormap)
        blended = draw_boxes(blended, [result.detections[chosen]], selected=0)
    except Exception as exc:  # any failure becomes a message, never a traceback
        with cam_col:
            show_error(exc)
        return
    cam_col.image(blended, caption=f"{METHOD_TITLES[controls.method]} for box {plain(box_label(result, chosen))} · "
                                   f"layer {plain(shown.layer)}", width="stretch")
    cam_col.download_button("Download overlay (PNG)", render.to_png_bytes(blended), file_name="gradcam-box.png",
                            mime="image/png", key=f"predict.cam_download.{image_key}", icon=":material/download:")
    explain_view.details(predictor, model_ref, image_key, item, shown, explained, controls, refs, result)

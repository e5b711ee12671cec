"""Grad-CAM, faithfulness, compare and feedback widgets of the Predict page.

Heatmaps are kept in session state by (image, model, method, layer, class), so moving
the opacity slider or changing the colormap only re-blends; nothing is recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from imgrec import explain
from ui import cache
from ui.charts import curves
from ui.widgets import show_error

HEATMAPS = "predict.heatmaps"
FAITHFULNESS = "predict.faithfulness"

AUTO_LAYER = "automatic (last conv layer)"
METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}


@dataclass(frozen=True)
class CamControls:
    enabled: bool
    method: str
    layer: str | None
    opacity: float
    colormap: str


def sidebar_controls() -> CamControls:
    # Per-session caches; set here (every run), not at import, which happens once per process.
    st.session_state.setdefault(HEATMAPS, {})
    st.session_state.setdefault(FAITHFULNESS, {})
    st.subheader("Grad-CAM")
    enabled = st.toggle("Show heatmaps", value=True, key="predict.cam_on")
    method = st.radio("Method", list(explain.METHODS), horizontal=True, key="predict.cam_method",
                      format_func=METHOD_TITLES.get)
    opacity = st.slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="predict.cam_opacity")
    colormap = st.selectbox("Colormap", list(explain.COLORMAPS), key="predict.cam_colormap")
    layer = st.session_state.get("predict.cam_layer", AUTO_LAYER)
    return CamControls(enabled, method, None if layer == AUTO_LAYER else layer, opacity, colormap)


def _heatmap(predictor, model_ref: str, image_key: str, pixels, method: str, layer: str | None, target: int):
    cache_key = (image_key, model_ref, method, layer, target)
    heatmaps = st.session_state[HEATMAPS]
    if cache_key not in heatmaps:
        heatmaps[cache_key] = explain.gradcam(predictor, pixels, layer=layer, target_class=target, method=method)
    return heatmaps[cache_key]


def _class_index(predictor, label: str) -> int:
    return predictor.card.class_names.index(label)


def overlay_panel(predictor, model_ref, image_key, item, predictions, controls: CamControls) -> None:
    if not controls.enabled:
        st.caption("Heatmaps are off (sidebar).")
        return
    labels = [p.label for p in predictions]
    target_label = st.selectbox("Explain class", labels, key=f"predict.cam_target.{image_key}")
    try:
        cam = _heatmap(predictor, model_ref, image_key, item.image.pixels, controls.method, controls.layer,
                       _class_index(predictor, target_label))
    except Exception as exc:  # noqa: BLE001
        show_error(exc)
        return
    blended = explain.overlay(item.image.pixels, cam.values, alpha=controls.opacity, colormap=controls.colormap)
    st.image(blended, caption=f"{METHOD_TITLES[controls.method]} for “{target_label}” · layer {cam.layer}",
             width="stretch")
    st.download_button(
        "Download overlay (PNG)", explain.to_png_bytes(blended), file_name="gradcam-overlay.png", mime="image/png",
        key=f"predict.cam_download.{image_key}", icon=":material/download:",
    )


def details(predictor, model_ref, image_key, item, predictions, controls: CamControls, refs,
            layer_picker: bool = True) -> None:
    """``layer_picker``: show the (page-wide) layer choice here; only one image may, its key is unique."""
    with st.expander("Explanation details: heatmap, layer, faithfulness, compare"):
        layer_tab, faith_tab, compare_tab = st.tabs(["Heatmap & layer", "Faithfulness", "Compare"])
        target = _class_index(predictor, st.session_state.get(f"predict.cam_target.{image_key}", predictions[0].label))
        with layer_tab:
            if layer_picker:
                layers = [AUTO_LAYER, *explain.candidate_layers(predictor.model)]
                st.selectbox("Layer (applies to every image)", layers, key="predict.cam_layer")
            else:
                st.caption(f"Layer: {controls.layer or AUTO_LAYER} (chosen under the first image).")
            cam = _heatmap(predictor, model_ref, image_key, item.image.pixels, controls.method, controls.layer, target)
            st.image(explain.colorize(cam.values, controls.colormap), caption="Heatmap alone", width=320)
        with faith_tab:
            _faithfulness(predictor, model_ref, image_key, item, cam, target)
        with compare_tab:
            _compare(predictor, model_ref, image_key, item, controls, refs, target)


def _faithfulness(predictor, model_ref, image_key, item, cam, target) -> None:
    st.caption(
        "Deletion: remove the most important pixels first — a faithful map makes the score fall fast (low AUC). "
        "Insertion: restore them onto a blurred copy — the score should rise fast (high AUC). "
        "A random map is the reference."
    )
    cache_key = (image_key, model_ref, cam.method, cam.layer, target)
    results = st.session_state[FAITHFULNESS]
    if cache_key not in results:
        if not st.button("Compute faithfulness", key=f"predict.faith_button.{image_key}", icon=":material/science:"):
            return
        with st.spinner("Scoring the map…"):
            results[cache_key] = explain.deletion_insertion(predictor, item.image.pixels, cam, target)
    score = results[cache_key]
    cols = st.columns(4)
    cols[0].metric("Deletion AUC", f"{score.deletion_auc:.3f}", f"{score.deletion_auc - score.random_deletion_auc:+.3f} vs random", delta_color="inverse")
    cols[1].metric("Insertion AUC", f"{score.insertion_auc:.3f}", f"{score.insertion_auc - score.random_insertion_auc:+.3f} vs random")
    cols[2].metric("Random deletion", f"{score.random_deletion_auc:.3f}")
    cols[3].metric("Random insertion", f"{score.random_insertion_auc:.3f}")
    frame = pd.DataFrame({
        "fraction": list(score.fractions) * 4,
        "score": [*score.deletion, *score.insertion, *score.random_deletion, *score.random_insertion],
        "curve": ["deletion"] * len(score.fractions) + ["insertion"] * len(score.fractions)
        + ["deletion (random map)"] * len(score.fractions) + ["insertion (random map)"] * len(score.fractions),
    })
    st.altair_chart(curves(frame, "fraction", "score", "curve", "Class score as pixels are removed or restored"),
                    width="stretch")


def _compare(predictor, model_ref, image_key, item, controls, refs, target) -> None:
    other_refs = [ref for ref in refs if ref != model_ref]
    choice = st.radio("Compare with", ["another CAM method", "another model"], horizontal=True,
                      key=f"predict.compare_kind.{image_key}")
    left, right = st.columns(2)
    if choice == "another CAM method":
        for column, method in zip((left, right), explain.METHODS):
            cam = _heatmap(predictor, model_ref, image_key, item.image.pixels, method, controls.layer, target)
            column.image(explain.overlay(item.image.pixels, cam.values, controls.opacity, controls.colormap),
                         caption=METHOD_TITLES[method], width="stretch")
        return
    if not other_refs:
        st.info("Only one model is registered. Train or add another to compare.")
        return
    other_ref = st.selectbox("Second model", other_refs, key=f"predict.compare_model.{image_key}")
    try:
        other = cache.predictor(*other_ref.split("@", 1))
        [other_result] = other.predict_detailed([item.image], top_k=3)
    except Exception as exc:  # noqa: BLE001
        show_error(exc)
        return
    for column, ref, model, probabilities in (
        (left, model_ref, predictor, item.result.probabilities),
        (right, other_ref, other, other_result.probabilities),
    ):
        top = model.top_k(probabilities, 3)
        cam = _heatmap(model, ref, image_key, item.image.pixels, controls.method, None,
                       _class_index(model, top[0].label))
        column.image(explain.overlay(item.image.pixels, cam.values, controls.opacity, controls.colormap),
                     caption=f"{ref}: {top[0].label} {top[0].score:.1%}", width="stretch")
        column.caption(" · ".join(f"{p.label} {p.score:.1%}" for p in top))


def feedback(image_key, item, class_names) -> None:
    if item.prediction_id is None:
        return
    with st.popover("This is wrong", icon=":material/flag:"):
        with st.form(f"predict.feedback.{image_key}", border=False):
            label = st.selectbox("The right label is", ["(not sure)", *class_names], key=f"predict.fb_label.{image_key}")
            note = st.text_input("Note (optional)", key=f"predict.fb_note.{image_key}", max_chars=500)
            if st.form_submit_button("Send feedback", key=f"predict.fb_send.{image_key}"):
                try:
                    cache.store().add_feedback(
                        item.prediction_id, corrected_label=None if label == "(not sure)" else label, wrong=True, note=note
                    )
                    st.success("Thanks — stored with the prediction.")
                except Exception as exc:  # noqa: BLE001
                    show_error(exc)

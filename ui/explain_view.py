"""Grad-CAM, faithfulness, compare and feedback widgets of the Predict page.

Heatmaps are kept in session state by (image, model, method, layer, target), so moving
the opacity slider or changing the colormap only re-blends; nothing is recomputed. With
heatmaps off nothing is computed at all; faithfulness and comparisons only on request.
A target is whatever the model's task says Grad-CAM explains (a class, a label, or one detection).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd
import streamlit as st

from imgrec.core.drawing import draw_boxes
from imgrec.core.refs import ModelRef
from imgrec.explain import cam, faithfulness, layers, localisation, render
from imgrec.tasks.base import DecodeOptions
from imgrec.tasks.detection import Detections
from ui import cache
from ui.charts import curves
from ui.predict_state import KEPT, kept_widget
from ui.widgets import forget_other_inputs, plain, show_error

HEATMAPS = "predict.heatmaps"
FAITHFULNESS = "predict.faithfulness"
LAYER = "predict.cam_layer"

AUTO_LAYER = "automatic (last conv layer)"
METHOD_TITLES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}


@dataclass(frozen=True)
class CamControls:
    enabled: bool
    method: str
    layer: str | None
    opacity: float
    colormap: str
    box: bool = False  # draw the box the heatmap implies (weakly supervised localisation)


def sidebar_controls() -> CamControls:
    """The model-independent controls; the layer is chosen by ``layer_picker`` once the model is loaded."""
    # Per-session caches; set here (every run), not at import, which happens once per process.
    st.session_state.setdefault(HEATMAPS, {})
    st.session_state.setdefault(FAITHFULNESS, {})
    st.subheader("Grad-CAM")
    enabled = kept_widget(st.toggle, "Show heatmaps", key="predict.cam_on", default=True)
    method = kept_widget(st.radio, "Method", key="predict.cam_method", default=cam.METHODS[0],
                         options=list(cam.METHODS), horizontal=True, format_func=METHOD_TITLES.get)
    opacity = kept_widget(st.slider, "Opacity", 0.0, 1.0, step=0.05, key="predict.cam_opacity", default=0.45)
    colormap = kept_widget(st.selectbox, "Colormap", key="predict.cam_colormap", default=render.COLORMAPS[0],
                           options=list(render.COLORMAPS))
    return CamControls(enabled, method, None, opacity, colormap)


def box_option(controls: CamControls) -> CamControls:
    """The option of a classifier's view: the box its heatmap implies (the Grad-CAM paper's localisation)."""
    box = kept_widget(st.toggle, "Box from the heatmap", key="predict.cam_box", default=False,
                      disabled=not controls.enabled,
                      help="Threshold the map at 15 % of its peak and box the largest connected region.")
    return replace(controls, box=box)


def layer_picker(predictor, model_ref: str, controls: CamControls) -> CamControls:
    """The page-wide layer choice among this model's layers (one widget, whatever the number of images).

    A layer chosen for another model that this one lacks falls back to the automatic layer.
    """
    try:
        choices = layers.candidate_layers(predictor.model)
    except Exception as exc:  # any failure becomes a message, never a traceback
        show_error(exc)
        choices = []
    saved = st.session_state.get(LAYER, st.session_state.get(KEPT, {}).get(LAYER, AUTO_LAYER))
    missing = saved not in (AUTO_LAYER, *choices)
    layer = kept_widget(st.selectbox, "Layer", key=LAYER, default=AUTO_LAYER, options=[AUTO_LAYER, *choices],
                        disabled=not controls.enabled,
                        help="The layer whose feature maps are explained, for every image (automatic: the last "
                             "convolution; for a detector, the features of the head each box comes from).")
    if missing:
        st.caption(f"{plain(model_ref)} has no layer {plain(saved)}: using the automatic layer.")
    return replace(controls, layer=None if layer == AUTO_LAYER else layer)


def forget_other_images(current_inputs: set[str]) -> None:
    for state_key in (HEATMAPS, FAITHFULNESS):
        forget_other_inputs(state_key, current_inputs)


def heatmap(predictor, model_ref: str, image_key: str, pixels, method: str, layer: str | None, target):
    """The heatmap of ``target`` (a task's explanation target), computed once per session, with a spinner."""
    cache_key = (image_key, model_ref, method, layer, target)
    heatmaps = st.session_state[HEATMAPS]
    if cache_key not in heatmaps:
        with st.spinner(f"Computing {METHOD_TITLES[method]} for “{target.label}”…"):
            heatmaps[cache_key] = cam.gradcam(predictor, pixels, layer=layer, target_class=target, method=method)
    return heatmaps[cache_key]


def target(predictor, result, choice: str | None = None):
    """What Grad-CAM explains: the chosen label or detection, else the result's headline (the task decides)."""
    return predictor.task.explanation_target(result, predictor.card, choice)


def heatmap_box_image(blended, heatmap_shown):
    """``blended`` with the box the heatmap implies drawn on it, or unchanged when the map is empty."""
    box = localisation.box_from_heatmap(heatmap_shown)
    if box is None:
        return blended
    found = localisation.HeatmapBox(heatmap_shown.label, heatmap_shown.target_class, heatmap_shown.probability, box)
    return draw_boxes(blended, [found])


def target_key(image_key: str) -> str:
    """The widget key of an image's "explain which label" picker."""
    return f"predict.cam_target.{image_key}"


def overlay_panel(predictor, model_ref, image_key, item, pick_target: Callable[[], str], controls: CamControls,
                  overlay_col, heatmap_col):
    """Overlay and bare heatmap in their columns, the label picker (``pick_target`` draws it and returns the
    label) and download below. Returns the heatmap shown and its target, or None (heatmaps off, or it could
    not be computed: then a message says why)."""
    if not controls.enabled:
        overlay_col.caption("Heatmaps are off (sidebar).")
        return None
    pick_col, download_col = st.columns([2, 1], vertical_alignment="bottom")
    with pick_col:
        target_label = pick_target()
    try:
        explained = target(predictor, item.result, target_label)
        with overlay_col:
            shown = heatmap(predictor, model_ref, image_key, item.image.pixels, controls.method, controls.layer,
                            explained)
        blended = render.overlay(item.image.pixels, shown.values, alpha=controls.opacity, colormap=controls.colormap)
        if controls.box:
            blended = heatmap_box_image(blended, shown)
        colors = render.colorize(shown.values, controls.colormap)
        png = render.to_png_bytes(blended)
    except Exception as exc:  # any failure becomes a message, never a traceback
        with overlay_col:
            show_error(exc)
        return None
    overlay_col.image(blended, caption=f"{METHOD_TITLES[controls.method]} for “{plain(target_label)}” · layer {plain(shown.layer)}",
                      width="stretch")
    heatmap_col.image(colors, caption="Heatmap alone", width="stretch")
    download_col.download_button(
        "Download overlay (PNG)", png, file_name="gradcam-overlay.png", mime="image/png",
        key=f"predict.cam_download.{image_key}", icon=":material/download:",
    )
    return shown, explained


def details(predictor, model_ref, image_key, item, shown, explained, controls: CamControls, refs,
            result=None) -> None:
    """Faithfulness and comparisons of the heatmap shown (of target ``explained``): both only on request.
    ``result``: the result shown, when it differs from the logged one (a detector's other thresholds)."""
    with st.expander("Explanation details: faithfulness, compare"):
        faith_tab, compare_tab = st.tabs(["Faithfulness", "Compare"])
        with faith_tab:
            _faithfulness(predictor, model_ref, image_key, item, shown, explained)
        with compare_tab:
            _compare(predictor, model_ref, image_key, item, controls, refs, explained,
                     item.result if result is None else result)


def _faithfulness(predictor, model_ref, image_key, item, heatmap, target) -> None:
    st.caption(
        "Deletion: remove the most important pixels first — a faithful map makes the score fall fast (low AUC). "
        "Insertion: restore them onto a blurred copy — the score should rise fast (high AUC). "
        "A random map is the reference."
    )
    cache_key = (image_key, model_ref, heatmap.method, heatmap.layer, target)
    results = st.session_state[FAITHFULNESS]
    if cache_key not in results:
        if not st.button("Compute faithfulness", key=f"predict.faith_button.{image_key}", icon=":material/science:"):
            return
        with st.spinner("Scoring the map…"):
            try:
                results[cache_key] = faithfulness.deletion_insertion(predictor, item.image.pixels, heatmap)
            except Exception as exc:  # any failure becomes a message, never a traceback
                show_error(exc)
                return
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
    st.altair_chart(curves(frame, "fraction", "score", "curve",
                           f"Score of “{target.label}” as pixels are removed or restored"), width="stretch")


COMPARE_KINDS = ("CAM methods", "another model")


def _compare(predictor, model_ref, image_key, item, controls, refs, explained, result) -> None:
    choice = st.segmented_control("Compare", COMPARE_KINDS, key=f"predict.compare_kind.{image_key}",
                                  format_func={"CAM methods": "Grad-CAM vs Grad-CAM++",
                                               "another model": "This model vs another"}.get)
    if choice is None:
        st.caption("Pick a comparison for this image; it is computed only then.")
        return
    if choice == "CAM methods":
        try:
            with st.spinner("Computing both maps…"):
                heatmap_pair = [heatmap(predictor, model_ref, image_key, item.image.pixels, method, controls.layer,
                                        explained) for method in cam.METHODS]
                blends = [render.overlay(item.image.pixels, shown.values, controls.opacity, controls.colormap)
                          for shown in heatmap_pair]
        except Exception as exc:  # any failure becomes a message, never a traceback
            show_error(exc)
            return
        for column, method, blended in zip(st.columns(2), cam.METHODS, blends):
            column.image(blended, caption=METHOD_TITLES[method], width="stretch")
        return
    other_refs = [ref for ref in refs if ref != model_ref]
    if not other_refs:
        st.info("Only one model is registered. Train or add another to compare.")
        return
    other_ref = st.selectbox("Second model", other_refs, key=f"predict.compare_model.{image_key}")
    panels = []
    try:
        with st.spinner(f"Predicting and explaining with {other_ref}…"):
            other_model = ModelRef.parse(other_ref)
            other = cache.predictor(other_model.name, other_model.version)
            [other_result] = other.predict([item.image], DecodeOptions(top_k=3))
            for ref, model, shown_result in ((model_ref, predictor, result), (other_ref, other, other_result)):
                # Each model's own automatic layer and headline target: a layer chosen for this model may
                # not exist in the other, and a detector explains its best box.
                shown = heatmap(model, ref, image_key, item.image.pixels, controls.method, None,
                                target(model, shown_result))
                panels.append((ref, model.task, shown_result, compare_image(item.image.pixels, shown, shown_result,
                                                                            controls)))
    except Exception as exc:  # any failure becomes a message, never a traceback
        show_error(exc)
        return
    for column, (ref, task, shown_result, blended) in zip(st.columns(2), panels):
        column.image(blended, caption=plain(ref), width="stretch")
        column.caption(plain(task.summary(shown_result)))


def compare_image(pixels, shown, result, controls):
    """The overlay of one compared model; a detector's boxes are drawn on it."""
    blended = render.overlay(pixels, shown.values, controls.opacity, controls.colormap)
    return draw_boxes(blended, result.detections) if isinstance(result, Detections) else blended


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
                except Exception as exc:
                    show_error(exc)

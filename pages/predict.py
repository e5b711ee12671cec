"""Predict: upload, photograph or pick images; see top-k scores, verdicts and Grad-CAM overlays."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from imgrec.core.images import ACCEPTED_EXTENSIONS
from imgrec.core.refs import ModelRef
from imgrec.core.samples import list_samples
from imgrec.core.settings import get_settings
from imgrec.inference.service import Upload, serve_uploads
from imgrec.tasks.base import DecodeOptions
from ui import cache, explain_view
from ui.charts import top_k_bars
from ui.widgets import ensure_routed, forget_other_inputs, plain, session_id, show_error

ensure_routed()
settings = get_settings()
RESULTS = "predict.results"  # (input key, model ref) -> Outcome; survives reruns, so nothing recomputes
MAX_TOP_K = 10
st.session_state.setdefault(RESULTS, {})

st.title("Predict")
st.caption("Upload images, take a photo or pick a sample. Scores, an uncertainty verdict and a Grad-CAM map for each.")

try:
    refs = cache.model_refs()
except Exception as exc:  # any failure becomes a message, never a traceback
    show_error(exc)
    st.stop()

with st.sidebar:
    st.subheader("Model")
    model_ref = st.selectbox("Model", refs, key="predict.model", help="The active model is listed first.")
    top_k = st.slider("Top-k", 1, MAX_TOP_K, settings.default_top_k, key="predict.top_k")
    threshold = st.slider(
        "Uncertain below", 0.0, 1.0, settings.uncertain_threshold, 0.05, key="predict.threshold",
        help="A top score under this is reported as uncertain.",
    )
    cam_controls = explain_view.sidebar_controls()

ref = ModelRef.parse(model_ref)

name, version = ref.name, ref.version
try:
    predictor = cache.predictor(name, version)
except Exception as exc:
    show_error(exc)
    st.stop()
with st.sidebar:
    cam_controls = explain_view.layer_picker(predictor, model_ref, cam_controls)

upload_tab, camera_tab, sample_tab = st.tabs(
    [":material/upload: Upload", ":material/photo_camera: Camera", ":material/collections: Samples"]
)
# (input key, file name, how to read it): bytes are read only for inputs not classified yet.
inputs: list[tuple[str, str, Callable[[], bytes]]] = []
with upload_tab:
    files = st.file_uploader(
        f"Images ({', '.join(e.upper() for e in ACCEPTED_EXTENSIONS[:6])}…)",
        type=list(ACCEPTED_EXTENSIONS),
        accept_multiple_files=True,
        key="predict.files",
        # Whole MB, rounded up (never 0, which Streamlit refuses); decoding enforces the exact byte limit.
        max_upload_size=max(1, -(-settings.max_upload_bytes // (1024 * 1024))),
    )
    inputs += [(f"upload:{f.file_id}", f.name, f.getvalue) for f in files or []]
with camera_tab:
    if st.toggle("Use the camera", key="predict.camera_on"):
        photo = st.camera_input("Take a photo", key="predict.camera")
        if photo is not None:
            inputs.append((f"camera:{photo.file_id}", "camera photo", photo.getvalue))
with sample_tab:
    samples = list_samples(settings)
    if samples:
        chosen = st.multiselect("Sample photos", list(samples), key="predict.samples", placeholder="Pick one or more")
        inputs += [(f"sample:{name}", name, samples[name].read_bytes) for name in chosen]
    else:
        st.info("No sample photos found. Set IMGREC_SAMPLES_DIR to a folder of images.")

current_inputs = {key for key, _, _ in inputs}
forget_other_inputs(RESULTS, current_inputs)
explain_view.forget_other_images(current_inputs)
if not inputs:
    st.info("Add an image to see what the model makes of it.", icon=":material/arrow_upward:")
    st.stop()

results = st.session_state[RESULTS]
new = [(key, Upload(name, read())) for key, name, read in inputs if (key, model_ref) not in results]
if new:
    with st.spinner(f"Predicting {len(new)} image(s)…"):
        # Decoded with the slider's largest top-k, so moving the slider only re-ranks, never re-predicts.
        outcomes = serve_uploads(predictor, [upload for _, upload in new], DecodeOptions(top_k=MAX_TOP_K), settings,
                                 cache.prediction_log(), source="app", session_id=session_id())
    for (key, _), outcome in zip(new, outcomes, strict=True):
        results[(key, model_ref)] = outcome

for key, name, _ in inputs:
    item = results[(key, model_ref)]
    st.divider()
    st.subheader(plain(name), anchor=False)
    if not item.ok:
        st.error(plain(item.error), icon=":material/broken_image:")
        continue
    if item.log_warning:
        st.warning(plain(item.log_warning), icon=":material/database:")
    predictions = item.result.predictions[:top_k]
    best = predictions[0]
    images_col, chart_col = st.columns([3, 1.3], gap="medium")
    with images_col:
        # original | overlay | heatmap, with the class picker and the download under them
        image_col, overlay_col, heatmap_col = st.columns(3, gap="small")
        image_col.image(item.image.pixels, caption=f"{item.image.width}×{item.image.height} {item.image.format}",
                        width="stretch")
        heatmap = explain_view.overlay_panel(predictor, model_ref, key, item, predictions, cam_controls,
                                         overlay_col, heatmap_col)
    with chart_col:
        if best.score < threshold:
            st.warning(f"**Uncertain** — best guess *{plain(best.label)}* at {best.score:.1%}", icon=":material/help:")
        else:
            st.success(f"**{plain(best.label)}** — {best.score:.1%}", icon=":material/check_circle:")
        st.altair_chart(top_k_bars(predictions, threshold), width="stretch")
        st.caption(f"{plain(item.card.ref)} · {item.result.latency_ms:.0f} ms")
    if heatmap is not None:
        explain_view.details(predictor, model_ref, key, item, heatmap, cam_controls, refs)
    explain_view.feedback(key, item, predictor.card.class_names)

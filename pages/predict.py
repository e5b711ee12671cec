"""Predict: upload, photograph or pick images; see each model's result (a classifier's top-k scores, a
multi-label model's label set, a detector's boxes and counts), its task's verdict and Grad-CAM overlays.
Everything is kept across page visits."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from imgrec.core.images import ACCEPTED_EXTENSIONS
from imgrec.core.refs import ModelRef
from imgrec.core.samples import list_samples
from imgrec.core.settings import get_settings
from imgrec.inference.service import Upload, serve_uploads
from imgrec.tasks.classification import ClassificationTask
from imgrec.tasks.detection import DetectionTask
from imgrec.tasks.multilabel import MultiLabelTask
from ui import (
    cache,
    detection_view,
    explain_view,
    predict_classification,
    predict_multilabel,
    predict_results,
    predict_state,
)
from ui.predict_state import kept_widget
from ui.widgets import ensure_routed, forget_other_inputs, or_stop, plain, session_id, show_error

ensure_routed()
settings = get_settings()
RESULTS = "predict.results"  # (input key, model ref) -> Outcome; survives reruns and page visits
SERVED = "predict.served"  # (input key, model ref) -> the DecodeOptions its Outcome was decoded with
OUTPUTS = "predict.outputs"  # (input key, model ref) -> raw outputs, to decode again with other options
SHOWN = "predict.shown"  # (input key, model ref, options) -> the result decoded with those options
# Each task's sidebar options and per-image view.
VIEWS = {ClassificationTask: predict_classification, MultiLabelTask: predict_multilabel, DetectionTask: detection_view}
for state_key in (RESULTS, SERVED, OUTPUTS, SHOWN):
    st.session_state.setdefault(state_key, {})

st.title("Predict")
st.caption("Upload images, take a photo or pick a sample. Each model's result, a verdict and a Grad-CAM map for each.")

refs = or_stop(cache.model_refs)

with st.sidebar:
    for problem in cache.stock_detectors(str(settings.models_dir)):
        st.caption(f"A shipped detector is not listed: {plain(problem)}")
    st.subheader("Model")
    model_ref = kept_widget(st.selectbox, "Model", key="predict.model", default=refs[0], options=refs,
                            help="The active model is listed first.")

ref = ModelRef.parse(model_ref)
predictor = or_stop(lambda: cache.predictor(ref.name, ref.version))
view = VIEWS[type(predictor.task)]
with st.sidebar:
    options = view.sidebar_options(predictor.card)
    threshold = kept_widget(st.slider, "Uncertain below", 0.0, 1.0, step=0.05, key="predict.threshold",
                            default=settings.uncertain_threshold, disabled=not view.USES_THRESHOLD,
                            help="The verdict calls a result uncertain when its best (calibrated) score is under "
                                 "this." if view.USES_THRESHOLD else "This model's labels have their own thresholds.")
    cam_controls = view.cam_options(explain_view.sidebar_controls())
    cam_controls = explain_view.layer_picker(predictor, model_ref, cam_controls)

upload_tab, camera_tab, sample_tab = st.tabs(
    [":material/upload: Upload", ":material/photo_camera: Camera", ":material/collections: Samples"]
)
# (input key, file name, how to read it): bytes are read only for inputs not predicted yet.
inputs: list[tuple[str, str, Callable[[], bytes]]] = []
with upload_tab:
    kept_uploads = predict_state.uploads(lambda key: st.file_uploader(
        f"Images ({', '.join(e.upper() for e in ACCEPTED_EXTENSIONS[:6])}…)",
        type=list(ACCEPTED_EXTENSIONS),
        accept_multiple_files=True,
        key=key,
        # Whole MB, rounded up (never 0, which Streamlit refuses); decoding enforces the exact byte limit.
        max_upload_size=max(1, -(-settings.max_upload_bytes // (1024 * 1024))),
    ))
    if kept_uploads:
        kept_col, clear_col = st.columns([3, 1], vertical_alignment="center")
        kept_col.caption(f"{len(kept_uploads)} uploaded image(s) kept: "
                         + ", ".join(plain(upload.filename) for upload in kept_uploads.values()))
        clear_col.button("Clear uploads", key="predict.clear_uploads", icon=":material/delete_sweep:",
                         on_click=predict_state.clear_uploads)
    inputs += [(key, upload.filename, lambda upload=upload: upload.data) for key, upload in kept_uploads.items()]
with camera_tab:
    if kept_widget(st.toggle, "Use the camera", key="predict.camera_on", default=False):
        photo = st.camera_input("Take a photo", key="predict.camera")
        if photo is not None:
            inputs.append((f"camera:{photo.file_id}", "camera photo", photo.getvalue))
with sample_tab:
    samples = list_samples(settings)
    if samples:
        chosen = kept_widget(st.multiselect, "Sample photos", key="predict.samples", default=[],
                             options=list(samples), placeholder="Pick one or more")
        inputs += [(f"sample:{name}", name, samples[name].read_bytes) for name in chosen]
    else:
        st.info("No sample photos found. Set IMGREC_SAMPLES_DIR to a folder of images.")

current_inputs = {key for key, _, _ in inputs}
for state_key in (RESULTS, SERVED, OUTPUTS, SHOWN, predict_results.THUMBNAILS):
    forget_other_inputs(state_key, current_inputs)
explain_view.forget_other_images(current_inputs)
if not inputs:
    st.info("Add an image to see what the model makes of it.", icon=":material/arrow_upward:")
    st.stop()

results = st.session_state[RESULTS]
new = [(key, Upload(name, read())) for key, name, read in inputs if (key, model_ref) not in results]
if new:
    with st.spinner(f"Predicting {len(new)} image(s) with {model_ref}…"):
        outcomes = serve_uploads(predictor, [upload for _, upload in new], options, settings,
                                 cache.prediction_log(), source="app", session_id=session_id())
    for (key, _), outcome in zip(new, outcomes, strict=True):
        results[(key, model_ref)] = outcome
        st.session_state[SERVED][(key, model_ref)] = options


def shown_result(key: str, item):
    """The result under the sidebar's options: the logged one, or the same outputs decoded again (a
    detector's thresholds or class filter moved): the model runs at most once more per image."""
    if not item.ok or st.session_state[SERVED][(key, model_ref)] == options:
        return item.result
    shown = st.session_state[SHOWN]
    if (key, model_ref, options) not in shown:
        outputs = st.session_state[OUTPUTS]
        if (key, model_ref) not in outputs:
            with st.spinner("Decoding again with the new settings…"):
                outputs[(key, model_ref)] = predictor.predict_outputs([item.image])
        [shown[(key, model_ref, options)]] = predictor.decode(outputs[(key, model_ref)], options,
                                                              item.result.latency_ms,
                                                              [(item.image.height, item.image.width)])
    return shown[(key, model_ref, options)]


try:
    entries = [(key, name, results[(key, model_ref)], shown_result(key, results[(key, model_ref)]))
               for key, name, _ in inputs]
except Exception as exc:  # e.g. a class filter the model refuses: a message, never a traceback
    show_error(exc)
    st.stop()
if len(entries) > 1:
    predict_results.show(entries, threshold)

for key, name, item, result in entries:
    st.divider()
    st.subheader(plain(name), anchor=False)
    if not item.ok:
        st.error(plain(item.error), icon=":material/broken_image:")
        continue
    if item.log_warning:
        st.warning(plain(item.log_warning), icon=":material/database:")
    view.show(predictor, model_ref, key, item, result, threshold, cam_controls, refs)

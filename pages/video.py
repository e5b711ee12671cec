"""Video: the live webcam with labels or boxes drawn per frame, and video files with a timeline and downloads."""

from __future__ import annotations

import streamlit as st

from imgrec.core.errors import ImgrecError
from imgrec.core.refs import ModelRef
from imgrec.core.settings import get_settings
from imgrec.tasks.base import DecodeOptions
from imgrec.video.decode import ACCEPTED, ACCEPTED_EXTENSIONS
from ui import cache, video_view
from ui.widgets import ensure_routed, or_stop, plain, show_error

ensure_routed()
settings = get_settings()
RESULTS = "video.results"  # (file id, model ref, every, top-k) -> results; reruns never reprocess
MAX_TOP_K = 10
st.session_state.setdefault(RESULTS, {})

st.title("Video")
st.caption("Your webcam, live, or a video file: labels or boxes on every frame processed.")

refs = or_stop(cache.model_refs)

with st.sidebar:
    st.subheader("Model")
    model_ref = st.selectbox("Model", refs, key="video.model", help="The active model is listed first.")
    top_k = st.slider("Top-k", 1, MAX_TOP_K, min(3, settings.default_top_k), key="video.top_k")

ref = ModelRef.parse(model_ref)
predictor = or_stop(lambda: cache.predictor(ref.name, ref.version))

live_tab, file_tab = st.tabs([":material/videocam: Live webcam", ":material/movie: Video file"])
with live_tab:
    # WebRTC starts only when asked for: a visit to the page never asks for the camera.
    if st.toggle("Use the webcam", key="video.webcam_on"):
        with_gradcam = st.toggle("Grad-CAM overlay", key="video.gradcam",
                                 help=f"A map every {video_view.GRADCAM_EVERY} frames; it lowers the frame rate.")
        video_view.live(predictor, model_ref, top_k, with_gradcam, settings)

with file_tab:
    upload = st.file_uploader(f"Video ({ACCEPTED})", type=list(ACCEPTED_EXTENSIONS), key="video.file",
                              max_upload_size=max(1, -(-settings.video_max_bytes // (1024 * 1024))))
    every = st.number_input("Process every Nth frame", 1, 1000, 5, key="video.every")
    if upload is None:
        st.info(f"Add a video ({ACCEPTED}, at most {settings.video_max_bytes / 1e6:.0f} MB and "
                f"{settings.video_max_duration_s:g} s).", icon=":material/arrow_upward:")
        st.stop()
    key = (upload.file_id, model_ref, int(every), top_k)
    results = st.session_state[RESULTS]
    if key not in results:
        try:
            results.clear()  # one video's results kept: they hold the annotated file
            results[key] = video_view.process_file(predictor, upload.name, upload.getvalue(),
                                                   DecodeOptions(top_k=top_k), int(every), settings)
        except ImgrecError as exc:
            st.error(plain(exc), icon=":material/broken_image:")
            st.stop()
        except Exception as exc:
            show_error(exc)
            st.stop()
    video_view.file_results(upload.name, results[key])

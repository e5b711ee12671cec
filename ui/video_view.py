"""The Video page's parts: the live webcam (streamlit-webrtc) with its rates, and a video file's results."""

from __future__ import annotations

import tempfile
from pathlib import Path

import altair as alt
import streamlit as st

from imgrec.core.errors import ImgrecError
from imgrec.tasks.base import DecodeOptions
from imgrec.video.decode import open_video
from imgrec.video.live import LiveAnnotator, ice_servers
from imgrec.video.process import process_video, results_table, table_bytes, timeline
from ui import cache
from ui.widgets import plain, show_error

# What the browser's camera prompts and failures say (streamlit-webrtc's own words are terse).
CAMERA_WORDS = {
    "device_access_denied": "The camera was refused. Allow camera access for this site in the browser, then press "
                            "Start again.",
    "device_not_available": "No camera was found, or another program is using it.",
    "media_api_not_available": "This browser cannot share a camera here (it needs HTTPS or localhost).",
    "device_ask_permission": "Allow the browser to use the camera.",
}
GRADCAM_EVERY = 10  # frames between two Grad-CAM maps: a map costs several inferences


def gradcam_overlay(predictor):
    """(pixels, result) → pixels with the Grad-CAM map of the result's headline class or box blended in."""
    from imgrec.explain import cam, render

    def overlay(pixels, result):
        return render.overlay(pixels, cam.gradcam(predictor, pixels))

    return overlay


def live(predictor, model_ref: str, top_k: int, with_gradcam: bool, settings) -> None:
    """The webcam through WebRTC; frames are predicted in the callback's thread, the latest frame winning."""
    from streamlit_webrtc import WebRtcMode, webrtc_streamer

    try:
        servers = ice_servers(settings)
    except ImgrecError as exc:
        show_error(exc)
        return
    key = ("video.live", model_ref, top_k, with_gradcam)
    annotator = st.session_state.get("video.annotator")
    if annotator is None or st.session_state.get("video.annotator_key") != key:
        annotator = LiveAnnotator(predictor, DecodeOptions(top_k=top_k),
                                  overlay=gradcam_overlay(predictor) if with_gradcam else None,
                                  overlay_every=GRADCAM_EVERY)
        st.session_state["video.annotator"], st.session_state["video.annotator_key"] = annotator, key
    context = webrtc_streamer(
        key="video.webcam",
        mode=WebRtcMode.SENDRECV,
        rtc_configuration={"iceServers": servers},
        media_stream_constraints={"video": True, "audio": False},
        video_frame_callback=annotator.video_frame_callback,
        async_processing=True,  # a worker thread takes the newest frame; stale ones are dropped
        translations=CAMERA_WORDS,
    )
    if context.state.playing:
        _live_rates(annotator)
    else:
        st.caption("Press Start and allow the camera. Frames are predicted on this server; with "
                   + ("Grad-CAM every " + str(GRADCAM_EVERY) + " frames." if with_gradcam else "labels or boxes drawn."))


@st.fragment(run_every=1.0)
def _live_rates(annotator: LiveAnnotator) -> None:
    stats = annotator.stats()
    fps_col, latency_col, frames_col = st.columns(3)
    fps_col.metric("Frames per second", f"{stats.fps:.1f}")
    latency_col.metric("Model latency", f"{stats.latency_ms:.0f} ms")
    frames_col.metric("Frames", f"{stats.frames}")
    if stats.summary:
        st.caption(plain(stats.summary))


def process_file(predictor, name: str, data: bytes, options: DecodeOptions, every: int, settings) -> dict:
    """The file through ``process_video`` with a progress bar: its table, annotated MP4 and frame count."""
    with open_video(data, settings) as video:
        expected = max(1, -(-(video.info.frame_count or round(video.info.duration_s * video.info.fps)) // every))
        progress = st.progress(0.0, text=f"Processing {plain(name)}…")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=settings.data_dir, prefix=".video-") as folder:
            output = Path(folder) / "annotated.mp4"
            items = []
            for item in process_video(predictor, video, options, every=every, output=output,
                                      prediction_log=cache.prediction_log(), filename=name, settings=settings):
                items.append(item)
                progress.progress(min(1.0, len(items) / expected),
                                  text=f"Frame {item.index} of about {expected * every} ({item.time_s:.1f} s)")
            annotated = output.read_bytes()
        progress.empty()
        warnings = {item.log_warning for item in items if item.log_warning}
        return {"table": results_table(items), "video": annotated, "info": video.info, "warnings": warnings}


def file_results(name: str, outcome: dict) -> None:
    info, table = outcome["info"], outcome["table"]
    for warning in outcome["warnings"]:
        st.warning(plain(warning), icon=":material/database:")
    st.caption(f"{info.format} · {info.width}×{info.height} · {info.fps:.1f} fps · {info.duration_s:.1f} s · "
               f"{table['frame'].nunique()} frames processed")
    video_col, chart_col = st.columns([1, 1], gap="medium")
    video_col.video(outcome["video"], format="video/mp4")
    counts = timeline(table)
    chart_col.subheader("Timeline", anchor=False)
    if counts.empty or counts.shape[1] == 0:
        chart_col.info("Nothing was found in the processed frames.")
    else:
        long = counts.reset_index().melt(id_vars="time_s", var_name="label", value_name="count")
        chart_col.altair_chart(alt.Chart(long).mark_line(point=True).encode(
            x=alt.X("time_s:Q", title="time (s)"), y=alt.Y("count:Q", title="count"),
            color=alt.Color("label:N"), tooltip=["time_s", "label", "count"]), width="stretch")
    stem = Path(name).stem or "video"
    mp4_col, csv_col, parquet_col = st.columns(3)
    mp4_col.download_button("Annotated video", outcome["video"], f"{stem}-annotated.mp4", "video/mp4",
                            icon=":material/movie:")
    csv_col.download_button("Frames (CSV)", table_bytes(table, "csv"), f"{stem}-frames.csv", "text/csv",
                            icon=":material/table:")
    parquet_col.download_button("Frames (Parquet)", table_bytes(table, "parquet"), f"{stem}-frames.parquet",
                                "application/vnd.apache.parquet", icon=":material/table:")
    st.dataframe(table, hide_index=True, width="stretch")

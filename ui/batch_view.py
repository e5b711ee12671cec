"""The Models page's batch panel: run ``imgrec batch`` over a folder for a model, its progress, its results."""

from __future__ import annotations

import io
from pathlib import Path

import streamlit as st

from imgrec.batch.job import Progress, new_output, past_outputs, read_results, run_batch
from imgrec.core.settings import Settings
from imgrec.registry.card import ModelCard
from ui.widgets import LOCKED, plain, show_error

OUTPUT_KEY = "models.batch.output"
SHOWN_COLUMNS = ["source_path", "label", "score", "error", "detail"]


def batch_panel(card: ModelCard, settings: Settings, unlocked: bool) -> None:
    st.caption("Predict every image of a folder, glob or bucket URL with this version on Ray Data (a local Ray "
               "on this machine), exactly as `imgrec batch` does; the results are kept under data/batch/.")
    with st.form("models.batch_form", border=True):
        source = st.text_input("Images", value=str(settings.samples_dir), key="models.batch.source",
                               help="A folder, a glob (photos/*.jpg), a CSV/Parquet list of paths, or s3://bucket/prefix")
        log = st.checkbox("Also write the predictions to the prediction log (source: batch)", key="models.batch.log")
        run = st.form_submit_button("Run batch", icon=":material/play_arrow:", type="primary", disabled=not unlocked,
                                    help=None if unlocked else LOCKED)
    if run:
        _run(card, settings, source.strip(), log)
    outputs = past_outputs(settings)
    if not outputs:
        st.info("No batch results yet: run one above.", icon=":material/dataset:")
        return
    names = [p.name for p in outputs]
    latest = st.session_state.get(OUTPUT_KEY)
    chosen = st.selectbox("Results", names, index=names.index(latest) if latest in names else 0,
                          key="models.batch.results")
    try:
        results_view(outputs[names.index(chosen)])
    except Exception as exc:  # a damaged output becomes a message, never a traceback
        show_error(exc)


def _run(card: ModelCard, settings: Settings, source: str, log: bool) -> None:
    output = new_output(settings, card.ref)
    bar = st.progress(0.0, text="Starting Ray and loading the model in its actors…")

    def show(progress: Progress) -> None:
        bar.progress(progress.images / max(progress.total, 1),
                     text=f"{progress.images} of {progress.total} images, {progress.failures} failed, "
                          f"{progress.images_per_s:.1f} images/s")

    try:
        summary = run_batch(source, card.ref, str(output), settings, log=log, on_progress=show)
    except Exception as exc:  # a bad folder or model becomes a message, never a traceback
        bar.empty()
        show_error(exc)
        return
    bar.progress(1.0, text="Done")
    st.session_state[OUTPUT_KEY] = output.name
    st.success(plain(summary.line()), icon=":material/check_circle:")


def results_view(output: Path) -> None:
    rows = read_results(str(output))
    failed = rows[rows.error.notna()]
    images = rows.source_path.nunique()
    left, middle, right = st.columns(3)
    left.metric("Images", images)
    middle.metric("Failed", failed.source_path.nunique())
    right.metric("Model", rows.model.iloc[0] if len(rows) else "—")
    st.dataframe(rows[SHOWN_COLUMNS], hide_index=True, width="stretch")
    counts = rows.label.dropna().value_counts().rename_axis("label").reset_index(name="images")
    if len(counts):
        st.markdown("**Label distribution**")
        st.bar_chart(counts, x="label", y="images", horizontal=True)
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    st.download_button("Download the results (Parquet)", buffer.getvalue(), file_name=output.name,
                       mime="application/vnd.apache.parquet", icon=":material/download:", key="models.batch.download")

"""The Predict page's table of many uploads: thumbnail, file, headline label and score, verdict and why, result;
and its CSV download (the same rows without thumbnails)."""

from __future__ import annotations

import base64
import io

import pandas as pd
import streamlit as st

from imgrec.tasks.registry import task_for

THUMBNAILS = "predict.thumbnails"  # (input key,) -> data URI of a small PNG
THUMBNAIL_SIDE = 96


def thumbnail(input_key: str, pixels) -> str:
    from PIL import Image

    thumbnails = st.session_state.setdefault(THUMBNAILS, {})
    if (input_key,) not in thumbnails:
        image = Image.fromarray(pixels)
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        thumbnails[(input_key,)] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return thumbnails[(input_key,)]


def table(entries, threshold: float) -> pd.DataFrame:
    """One row per (input key, file name, outcome, result shown); the task words every cell."""
    rows = []
    for input_key, name, item, result in entries:
        if not item.ok:
            rows.append({"thumbnail": None, "file": name, "result": item.error, "label": None, "score": None,
                         "verdict": "error", "why": None})
            continue
        task = task_for(item.card)
        headline = task.log_labels(result)[:1]
        verdict = task.verdict(result, threshold)
        rows.append({
            "thumbnail": thumbnail(input_key, item.image.pixels),
            "file": name,
            "result": task.summary(result),
            "label": headline[0][0] if headline else None,
            "score": round(headline[0][1], 4) if headline else None,
            "verdict": verdict.kind,
            "why": verdict.text,
        })
    return pd.DataFrame(rows, columns=["thumbnail", "file", "label", "score", "verdict", "why", "result"])


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The table as CSV, without the thumbnails (data URIs are no use in a spreadsheet)."""
    return frame.drop(columns="thumbnail").to_csv(index=False).encode()


def show(entries, threshold: float) -> None:
    frame = table(entries, threshold)
    st.markdown(f"**All {len(frame)} images**")
    st.dataframe(
        frame, hide_index=True, width="stretch", key="predict.results_table",
        column_config={
            "thumbnail": st.column_config.ImageColumn("Image", width="small"),
            "file": st.column_config.TextColumn("File"),
            "result": st.column_config.TextColumn("Result", help="The task's one-line summary"),
            "label": st.column_config.TextColumn("Top label"),
            "score": st.column_config.ProgressColumn("Score", min_value=0.0, max_value=1.0, format="percent"),
            "verdict": st.column_config.TextColumn("Verdict"),
            "why": st.column_config.TextColumn("Why", help="The verdict in a line: calibrated score, margin, "
                                                            "or why the image looks outside the model's classes"),
        },
    )
    st.download_button("Download the table (CSV)", csv_bytes(frame),
                       file_name="predictions.csv", mime="text/csv", key="predict.results_csv",
                       icon=":material/download:")

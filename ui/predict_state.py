"""What the Predict page keeps across a visit to another page: widget values and uploaded files.

Streamlit drops a widget's value when a run of another page does not draw it, and a file uploader
cannot be given files back. So each kept widget's value is copied into one plain session entry
(``predict.kept``) after it is drawn and set back, once, before it is drawn again; uploads are kept
as bytes (``predict.uploads``) and leave only when removed in the uploader or cleared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from imgrec.inference.service import Upload

KEPT = "predict.kept"  # widget key -> its last value
UPLOADS = "predict.uploads"  # input key ("upload:<file id>") -> Upload, in upload order
UPLOADER_FILES = "predict.uploader_files"  # input keys the uploader widget held in the last run
UPLOADER_GENERATION = "predict.uploader_generation"  # a new uploader key empties the widget after "Clear"


def kept_widget(widget: Callable, *args, key: str, default: Any, options=None, **kwargs):
    """``widget(*args, key=key, **kwargs)`` showing the value kept from an earlier visit, else ``default``.

    With ``options`` (a select widget), a kept value that is no longer among them (another model's
    classes, a deleted model) is dropped: each kept value must fit the widget again.
    """
    kept = st.session_state.setdefault(KEPT, {})
    if key not in st.session_state:
        st.session_state[key] = kept.get(key, default)
    if options is not None:
        st.session_state[key] = _fit(st.session_state[key], options, default)
        args = (*args, options)
    value = widget(*args, key=key, **kwargs)
    kept[key] = st.session_state[key]
    return value


def _fit(value, options, default):
    options = list(options)
    if isinstance(value, list):
        return [v for v in value if v in options]
    return value if value in options else default


def uploads(widget: Callable[[str], list]) -> dict[str, Upload]:
    """The kept uploads after this run's uploader (``widget(key)`` draws it and returns its files).

    Files added to the uploader join the kept ones; files removed from it leave. A fresh uploader
    (the page drawn again after another page) holds nothing, which says nothing about the kept files.
    """
    kept: dict[str, Upload] = st.session_state.setdefault(UPLOADS, {})
    key = uploader_key()
    fresh = key not in st.session_state
    files = {f"upload:{f.file_id}": f for f in widget(key) or []}
    if not fresh:
        for removed in st.session_state.get(UPLOADER_FILES, set()) - files.keys():
            kept.pop(removed, None)
    for input_key, file in files.items():
        if input_key not in kept:
            kept[input_key] = Upload(file.name, file.getvalue())
    st.session_state[UPLOADER_FILES] = set(files)
    return kept


def uploader_key() -> str:
    generation = st.session_state.setdefault(UPLOADER_GENERATION, 0)
    return "predict.files" if generation == 0 else f"predict.files.{generation}"


def clear_uploads() -> None:
    """Forget every kept upload and empty the uploader (a new widget key)."""
    st.session_state[UPLOADS] = {}
    st.session_state[UPLOADER_FILES] = set()
    st.session_state[UPLOADER_GENERATION] = st.session_state.get(UPLOADER_GENERATION, 0) + 1

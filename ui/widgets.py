"""Small widgets shared by pages."""

from __future__ import annotations

import logging
import uuid

import streamlit as st

from imgrec.errors import ImgrecError

log = logging.getLogger(__name__)


def session_id() -> str:
    """A random id per browser session, stored with each prediction."""
    if "session.id" not in st.session_state:
        st.session_state["session.id"] = uuid.uuid4().hex
    return st.session_state["session.id"]


def show_error(exc: Exception) -> None:
    """Typed imgrec errors are the user's to read; anything else is ours, so say so without a traceback."""
    if isinstance(exc, ImgrecError):
        st.error(str(exc), icon=":material/error:")
    else:
        log.error("Unexpected error shown to the user as a message", exc_info=exc)
        st.error(f"Something went wrong on our side ({type(exc).__name__}). The details are in the server log.",
                 icon=":material/bug_report:")


def coming_soon(page: str, issue: str) -> None:
    st.title(page)
    st.info(f"The {page} page is not built yet: it arrives with the “{issue}” work.", icon=":material/construction:")

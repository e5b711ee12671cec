"""Small widgets shared by pages."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import streamlit as st

from imgrec.core.errors import ImgrecError
from ui import cache

log = logging.getLogger(__name__)

FLASH_KEY = "app.flash"  # a message shown once, after the rerun that follows an action
ROUTED_KEY = "app.routed"  # set by streamlit_app.py on every run it routes


def mark_routed() -> None:
    st.session_state[ROUTED_KEY] = True


def ensure_routed() -> None:
    """Rerun once when this page was not started by ``streamlit_app.py``.

    On a fresh server, a first request that is a deep link such as ``/models`` is run by Streamlit's
    old ``pages/`` discovery (file names as navigation, no page config) until some session has called
    ``st.navigation``. Streamlit keeps that mode in a class flag that only ``st.navigation`` clears
    (pinned Streamlit 1.67; a browser test covers it), so clear it and rerun through the entry script."""
    if not st.session_state.get(ROUTED_KEY):
        from streamlit.runtime.pages_manager import PagesManager

        mark_routed()  # once only, whatever happens next
        PagesManager.uses_pages_directory = False
        st.rerun()


def forget_other_inputs(state_key: str, current_inputs: set[str]) -> None:
    """Drop the session entries (keyed by tuples starting with an input key) of inputs no longer on the
    page: they hold full-size pixels and heatmaps, and a session would otherwise only grow."""
    entries = st.session_state.get(state_key, {})
    for key in [key for key in entries if key[0] not in current_inputs]:
        del entries[key]


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


# -- Messages that survive the rerun after an action -----------------------------------------------


def flash(kind: str, message: str) -> None:
    st.session_state[FLASH_KEY] = (kind, message)


def show_flash() -> None:
    kind, message = st.session_state.pop(FLASH_KEY, (None, None))
    if kind == "success":
        st.success(message, icon=":material/check_circle:")
    elif kind == "warning":
        st.warning(message, icon=":material/warning:")


def registry_changed(predictors: bool = False) -> None:
    """After a change to the registry: the model list other pages cache is stale (and the predictors,
    when the backend that serves a version changed)."""
    cache.model_refs.clear()
    if predictors:
        cache.predictor.clear()


def apply_change(action: Callable[[], Any], success: str, predictors: bool = False) -> None:
    """Run a registry change: a failure becomes a message; success refreshes the caches and reruns with
    the success message shown on top."""
    try:
        action()
    except Exception as exc:  # any failure becomes a message, never a traceback
        show_error(exc)
        return
    registry_changed(predictors=predictors)
    flash("success", success)
    st.rerun()

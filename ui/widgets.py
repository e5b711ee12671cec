"""Small widgets shared by pages."""

from __future__ import annotations

import hmac
import logging
import re
import uuid
from collections.abc import Callable
from typing import Any

import streamlit as st

from imgrec.core.errors import ImgrecError
from ui import cache

log = logging.getLogger(__name__)

# Every ASCII punctuation character Markdown, GitHub-flavoured Markdown or Streamlit's own directives
# (:red[...], :material/icon:, $math$) give a meaning to; a backslash makes each one literal.
_MARKDOWN_PUNCTUATION = set("\\`*_{}[]()<>#+-.!|~:$&=\"'^")
WORD_JOINER = "\u2060"
_AUTOLINK_STARTS = re.compile(r"(?<=:)(?=//)|(?<=www)(?=\.)|(?<=@)(?=[\w.-]*\.)", re.IGNORECASE)

FLASH_KEY = "app.flash"  # a message shown once, after the rerun that follows an action
ADMIN_KEY = "app.admin_unlocked"  # this session entered the admin token
LOCKED = "Needs the admin token: enter it in the sidebar."
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


def plain(text: object) -> str:
    """``text`` for a Markdown-rendering call (subheader, caption, success, …) shown exactly as written:
    an upload's file name or a model's label never becomes a link, an image the browser fetches, or
    formatting. Escapes stop Markdown; an invisible word joiner stops the autolinking that GFM applies to
    the text itself (inside ``://``, after ``www`` and after the ``@`` of an e-mail address)."""
    joined = _AUTOLINK_STARTS.sub(WORD_JOINER, str(text))
    return "".join("\\" + char if char in _MARKDOWN_PUNCTUATION else char for char in joined)


def show_error(exc: Exception) -> None:
    """Typed imgrec errors are the user's to read; anything else is ours, so say so without a traceback."""
    if isinstance(exc, ImgrecError):
        st.error(plain(exc), icon=":material/error:")
    else:
        log.error("Unexpected error shown to the user as a message", exc_info=exc)
        st.error(f"Something went wrong on our side ({type(exc).__name__}). The details are in the server log.",
                 icon=":material/bug_report:")


def or_stop(load: Callable[[], Any]) -> Any:
    """What ``load`` returns; if it fails, the error as a message and the page stops there (never a traceback)."""
    try:
        return load()
    except Exception as exc:  # any failure becomes a message
        show_error(exc)
        st.stop()


def may_change(settings) -> bool:
    """Whether this session may change models and runs: always when no ``IMGREC_ADMIN_TOKEN`` is set (the
    app then listens on 127.0.0.1 only, unless told otherwise), else once the token was entered."""
    return not settings.admin_token or bool(st.session_state.get(ADMIN_KEY))


def admin_unlocked(settings) -> bool:
    """``may_change``, asking for the admin token in the sidebar while it is needed. Once per page run."""
    if may_change(settings):
        return True
    with st.sidebar:
        given = st.text_input("Admin token", type="password", key="app.admin_token",
                              help="Changing models and runs needs the token the server was started with "
                                   "(IMGREC_ADMIN_TOKEN).")
        if not given:
            st.caption("Read-only until the admin token is entered.")
            return False
        if hmac.compare_digest(given.encode(), settings.admin_token.encode()):
            st.session_state[ADMIN_KEY] = True
            return True
        st.error("Wrong admin token.", icon=":material/lock:")
    return False


# -- Messages that survive the rerun after an action -----------------------------------------------


def flash(kind: str, message: str) -> None:
    st.session_state[FLASH_KEY] = (kind, message)


def show_flash() -> None:
    kind, message = st.session_state.pop(FLASH_KEY, (None, None))
    if kind == "success":
        st.success(plain(message), icon=":material/check_circle:")
    elif kind == "warning":
        st.warning(plain(message), icon=":material/warning:")


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

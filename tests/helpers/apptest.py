"""Running pages with Streamlit's AppTest against isolated settings."""

from __future__ import annotations

import contextlib
import re

import streamlit as st
from streamlit.testing.v1 import AppTest

from imgrec.core.settings import PROJECT_ROOT, get_settings
from tests.helpers.settings import settings_env


@contextlib.contextmanager
def app_with_settings(monkeypatch, settings, page: str | None = None, timeout: float = 120):
    """An AppTest of the whole app (navigation included) reading ``settings`` through the environment."""
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(str(PROJECT_ROOT / "streamlit_app.py"), default_timeout=timeout)
    if page:
        at.switch_page(page)
    try:
        yield at
    finally:
        get_settings.cache_clear()


def elements(at, kind: str) -> list:
    """Every element of a type (e.g. "vega_lite_chart", "image"), however deeply nested."""
    found = []

    def walk(node):
        if getattr(node, "type", None) == kind:
            found.append(node)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return found


def shown(value: str) -> str:
    """What a person reads of an element's Markdown source: the app escapes user and model text
    (``ui.widgets.plain``); a rendered backslash escape is the character alone, a word joiner invisible."""
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", value).replace("\u2060", "")

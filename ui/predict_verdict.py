"""The Predict page's verdict of one result, whatever the task: its kind as a badge, its one-line text, and a
warning when the task says the image looks unlike the model's classes."""

from __future__ import annotations

import streamlit as st

from imgrec.tasks.base import Verdict
from ui.widgets import plain

OUT_OF_DISTRIBUTION = "Outside this model's classes?"
# kind -> (badge title, badge colour, icon)
KINDS = {
    "confident": ("Confident", "green", ":material/check_circle:"),
    "uncertain": ("Uncertain", "orange", ":material/help:"),
    "none": ("Nothing found", "gray", ":material/search_off:"),
}


def show(verdict: Verdict, none_title: str | None = None) -> None:
    """``none_title`` names the "none" kind in the task's words (e.g. "No label found")."""
    title, colour, icon = KINDS[verdict.kind]
    if verdict.kind == "none" and none_title:
        title = none_title
    st.badge(title, icon=icon, color=colour)
    if verdict.out_of_distribution:
        reason = verdict.text.removeprefix(OUT_OF_DISTRIBUTION).strip()
        st.warning(f"**{OUT_OF_DISTRIBUTION}** {plain(reason)}", icon=":material/explore_off:")
    elif verdict.kind == "confident":
        st.success(plain(verdict.text), icon=icon)
    elif verdict.kind == "uncertain":
        st.warning(plain(verdict.text), icon=icon)
    else:
        st.info(plain(verdict.text), icon=icon)

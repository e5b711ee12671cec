"""Train: configure and launch a run, watch it live, cancel or resume it, and read its evaluation."""

from __future__ import annotations

import streamlit as st

from imgrec.core.settings import get_settings
from imgrec.training import runs
from ui import train_view as view
from ui.widgets import admin_unlocked, ensure_routed, show_error, show_flash

ensure_routed()
settings = get_settings()
st.title("Train")
st.caption("Transfer learning for single-label or multi-label classification, on a built-in dataset, class folders "
           "or a label-set layout. Each run trains in its own process; one at a time, the others queue.")
show_flash()
admin_unlocked(settings)  # asks for the token in the sidebar while changes need it

with st.expander("New run", expanded=st.session_state.pop(view.FORM_OPEN, False) or not runs.list_runs(settings),
                 icon=":material/add_circle:"):
    config = view.run_form()
    if config is not None:
        try:
            run = runs.submit(config, settings)
        except Exception as exc:  # any failure becomes a message
            show_error(exc)
        else:
            st.session_state[view.PICK] = run.id
            st.toast(f"Run {run.id} launched.")
            st.rerun()

st.subheader("Runs", anchor=False)
run_id = view.history_table()
if run_id:
    view.run_panel(run_id)
    status = runs.get_run(run_id, settings).status()
    if status.get("model_ref"):
        st.divider()
        view.activate_button(status["model_ref"])
        view.evaluation_panel(status["model_ref"], page="train")

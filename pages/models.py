"""Models: every model and version with its card, exports and parity, batch jobs, the active model, compare, files, delete."""

from __future__ import annotations

import streamlit as st

from imgrec.core.settings import get_settings
from imgrec.export import exporter
from imgrec.registry import catalog, exports
from imgrec.tasks.detection import DetectionTask
from imgrec.tasks.registry import task_for
from ui import batch_view, detection_report_view, train_view
from ui import models_view as view
from ui.widgets import (
    LOCKED,
    admin_unlocked,
    apply_change,
    ensure_routed,
    flash,
    or_stop,
    plain,
    show_error,
    show_flash,
)

# Where `make api` listens by default, for the usage snippets.
API_PORT = 8000

ensure_routed()
settings = get_settings()

st.title("Models")
st.caption("Registered models and their versions: cards, exports with a parity report, the active model, "
           "comparisons, downloads.")
show_flash()

cards, active = or_stop(lambda: (catalog.list_cards(settings), catalog.active_ref(settings)))

unlocked = admin_unlocked(settings)
locked_help = None if unlocked else LOCKED

if not cards:
    st.info("No models are registered yet. Train one on the Train page, or register the stock ImageNet model.",
            icon=":material/inventory_2:")
    if st.button("Register the ImageNet MobileNetV2", key="models.init", icon=":material/add:", disabled=not unlocked,
                 help=locked_help):
        with st.spinner("Registering the default model…"):
            apply_change(lambda: catalog.ensure_default_model(settings), "Registered the ImageNet MobileNetV2.")
    st.stop()

if active:
    st.success(f"Active model: **{plain(active)}** — the Predict page lists it first; the API serves it after "
               "`POST /model/reload`.", icon=":material/radio_button_checked:")
else:
    st.warning("The active model is missing: pick one below and make it active.", icon=":material/warning:")

view.overview(cards, active, settings, select_key="models.ref")

by_ref = {card.ref: card for card in cards}
refs = view.ordered_refs(cards, active)
ref = st.selectbox("Model version", refs, key="models.ref")  # the active model first
card = by_ref[ref]
is_active = ref == active

# Keyed, so the open tab survives the rerun after an action (an export no longer lands on the Card tab).
card_tab, evaluation_tab, exports_tab, batch_tab, compare_tab, files_tab, delete_tab = st.tabs([
    ":material/badge: Card", ":material/fact_check: Evaluation", ":material/conversion_path: Exports & parity",
    ":material/dataset: Batch", ":material/compare: Compare", ":material/download: Files",
    ":material/delete: Delete",
], key="models.tab", on_change="rerun")

with card_tab:
    st.subheader(plain(card.ref), anchor=False)
    if is_active:
        st.button("Active model", key="models.activate", disabled=True, icon=":material/check:")
    elif st.button("Make this the active model", key="models.activate", type="primary", icon=":material/star:",
                   disabled=not unlocked, help=locked_help):
        apply_change(lambda: catalog.set_active_model(card.name, card.version, settings),
                          f"{card.ref} is now the active model. The API switches after POST /model/reload.")
    view.card_panel(card)
    view.usage_panel(card, f"http://127.0.0.1:{API_PORT}")

with evaluation_tab:
    if task_for(card).name == DetectionTask.name:  # evaluated on a box dataset, not by a training run
        detection_report_view.detection_report_panel(card, settings)
        detection_report_view.evaluation_form(card, settings, unlocked)
    elif train_view.has_evaluation(ref):
        train_view.evaluation_panel(ref, page="models", show_images=False)  # tabs all run: load data on request
    else:
        st.info(f"{plain(card.ref)} has no evaluation report: only models trained here (Train page or "
                "`imgrec train`) carry one.", icon=":material/fact_check:")

with exports_tab:
    try:
        report = exports.read_parity(card.name, card.version, settings)
    except Exception as exc:
        show_error(exc)
        report = {}
    if report.get("exports"):
        view.parity_table(report, task_for(card))
        view.parity_notes(report)
    else:
        st.info(f"{plain(card.ref)} has no exports yet. Pick formats and run them: each is checked against the Keras "
                "model on held-out images.", icon=":material/conversion_path:")
    with st.form("models.export_form", border=True):
        formats = st.multiselect("Formats", exports.FORMATS, default=[view.DEFAULT_EXPORT], key="models.formats",
                                 format_func=lambda f: exports.FORMAT_INFO[f][0],
                                 help="ONNX is pre-selected: it exports in seconds; add others as needed.")
        run = st.form_submit_button("Run exports", icon=":material/play_arrow:", type="primary", disabled=not unlocked,
                                    help=locked_help)
    if run:
        if not formats:
            st.warning("Pick at least one format.", icon=":material/warning:")
        else:
            with st.status(f"Exporting {card.ref}…", expanded=True) as status:
                try:
                    results = exporter.export_model(card.name, card.version, formats, settings, progress=status.write)
                except Exception as exc:
                    status.update(label="Export failed", state="error")
                    show_error(exc)
                else:
                    bad = [r for r in results if not r.ok]
                    status.update(label="Exports finished", state="complete" if not bad else "error")
                    summary = ", ".join(f"{r.label}: {r.status}" for r in results)
                    flash("warning" if bad else "success", f"Exports of {card.ref} finished — {summary}.")
                    st.rerun()
    st.markdown("**Serving backend**")
    st.caption("Which runtime serves this version's predictions. Only exports whose parity status is ok can "
               "be chosen; their files are checked against the checksums recorded at export time.")
    try:
        choices = exports.serving_choices(card.name, card.version, settings)
        current = exports.serving_backend(card.name, card.version, settings)
    except Exception as exc:
        show_error(exc)
    else:
        chosen = st.selectbox("Serve predictions with", choices, key=f"models.serving.{ref}",
                              index=choices.index(current) if current in choices else 0,
                              format_func=view.serving_choice_label)
        if chosen != current and st.button("Use this backend", key="models.serving.apply", disabled=not unlocked,
                                           help=locked_help):
            apply_change(lambda: exports.set_serving_backend(card.name, card.version, chosen, settings),
                              f"{card.ref} is now served with {view.serving_choice_label(chosen)}.",
                              predictors=True)

with batch_tab:
    batch_view.batch_panel(card, settings, unlocked)

with compare_tab:
    if len(refs) < 2:
        st.info("Only one model version is registered: there is nothing to compare it with yet.",
                icon=":material/compare:")
    else:
        left, right = st.columns(2)
        # Keyed by the selected version: choosing another version above starts A at it again.
        a_ref = left.selectbox("Version A", refs, index=refs.index(ref), key=f"models.compare.a.{ref}")
        b_ref = right.selectbox("Version B", refs, index=next(i for i, r in enumerate(refs) if r != a_ref),
                                key=f"models.compare.b.{ref}")
        st.dataframe(view.comparison_frame(by_ref[a_ref], by_ref[b_ref]), hide_index=True, width="stretch")

with files_tab:
    try:
        view.downloads(card, settings)
    except Exception as exc:
        show_error(exc)

with delete_tab:
    if is_active:
        st.info(f"{plain(card.ref)} is the active model and cannot be deleted. Make another version active first.",
                icon=":material/lock:")
    else:
        st.warning(f"Deleting {plain(card.ref)} removes its model file, card and every export. This cannot be undone.",
                   icon=":material/delete_forever:")
        confirmed = st.checkbox(f"Yes, delete {plain(card.ref)}", key=f"models.delete.confirm.{ref}")
        if st.button("Delete version", key="models.delete", disabled=not (confirmed and unlocked),
                     icon=":material/delete:", help=locked_help):
            def delete() -> None:
                catalog.delete_version(card.name, card.version, settings)
                st.session_state.pop("models.ref", None)  # the deleted version can no longer be selected

            apply_change(delete, f"Deleted {card.ref}.")

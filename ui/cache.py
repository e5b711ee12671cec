"""The one place that holds Streamlit caches: a predictor per model loads once per process."""

from __future__ import annotations

import streamlit as st

from imgrec import registry
from imgrec.config import get_settings
from imgrec.errors import ImgrecError
from imgrec.predict import Predictor


@st.cache_resource(show_spinner="Loading model…", max_entries=4)
def predictor(name: str, version: str) -> Predictor:
    # Predictor.predict is thread-safe, so one instance serves every session.
    return Predictor.load(name, version, get_settings())


@st.cache_resource(show_spinner=False)
def store():
    from imgrec.store import open_store

    return open_store(get_settings())


@st.cache_data(ttl=30, show_spinner="Preparing the default model…")
def model_refs() -> list[str]:
    """Every registered model as ``name@version``, the active one first."""
    settings = get_settings()
    if not registry.model_names(settings):
        # First start without `make run` (which runs `imgrec init`): register the default model now.
        registry.ensure_default_model(settings)
    refs = [card.ref for card in registry.list_cards(settings)]
    try:
        active = "@".join(registry.resolve(settings=settings))
    except ImgrecError:  # the active (or default) model is gone: list what there is
        active = None
    return sorted(refs, key=lambda ref: ref != active)

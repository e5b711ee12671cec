"""Registering a YOLO detector: wrap its raw heads (``imgrec.modeling.yolo``) and save it as a new version."""

from __future__ import annotations

from imgrec.core.settings import Settings
from imgrec.modeling.yolo_spec import YoloHeadSpec
from imgrec.registry import catalog
from imgrec.registry.card import ModelCard
from imgrec.registry.detector_cards import detector_card


def register_detector(raw_model, spec: YoloHeadSpec, class_names: list[str], name: str, settings: Settings, *,
                      source: str, licence: str, dataset: str = "", description: str = "") -> ModelCard:
    """Wrap ``raw_model`` (float [0, 1] RGB in, raw heads out), save it as the next version of ``name``,
    and return its card."""
    from imgrec.modeling.yolo import detector_from_raw  # Keras loads only to register

    card = detector_card(spec, class_names, name, source=source, licence=licence, dataset=dataset,
                         description=description)
    return catalog.save_model(detector_from_raw(raw_model, spec), card, settings)

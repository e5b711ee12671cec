"""The Predict page's model list on a fresh install: the stock classifier and both shipped detectors are there
without any other face having registered them; each detector is loaded once, the first time only."""

from __future__ import annotations

import pytest

from imgrec.registry import detector_cards
from imgrec.registry.detector_cards import STOCK_DETECTORS
from tests.helpers.apptest import app_with_settings
from tests.helpers.settings import make_settings

pytestmark = pytest.mark.slow


def test_a_fresh_models_folder_lists_the_shipped_detectors(monkeypatch, tmp_path):
    settings = make_settings(tmp_path)
    if not settings.shared_detection_dir.is_dir():
        pytest.skip("shipped detectors not found (expected ../shared/detection)")
    loaded = []
    real_load = detector_cards.load_stock_detector
    monkeypatch.setattr(detector_cards, "load_stock_detector",
                        lambda name, s: loaded.append(name) or real_load(name, s))
    with app_with_settings(monkeypatch, settings, timeout=300) as at:
        at.run()
        assert not at.exception, at.exception
        options = at.selectbox(key="predict.model").options
    assert options[0].startswith(f"{settings.default_model}@")  # the active model stays first
    assert sorted(options[1:]) == sorted(f"{name}@1" for name in STOCK_DETECTORS)
    assert sorted(loaded) == sorted(STOCK_DETECTORS)
    with app_with_settings(monkeypatch, settings, timeout=300) as at:  # a new process: already registered
        at.run()
        assert at.selectbox(key="predict.model").options == options
    assert len(loaded) == len(STOCK_DETECTORS)

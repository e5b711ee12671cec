"""Shared fixtures: isolated settings, a tiny real model, and the real ImageNet default model.

Fixtures only: the functions and constants they use live in ``tests/helpers/`` (import them from there,
never from this file).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pylibsrtp  # noqa: F401  (aiortc's SRTP, before any test loads TensorFlow: after it, it crashes the process)
import pytest

from imgrec.core.settings import Settings
from tests.helpers.models import build_tiny_model, tiny_card
from tests.helpers.settings import make_settings, shared_dir


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    path = Path(os.environ.get("IMGREC_SAMPLES_DIR", shared_dir() / "photos"))
    if not (path / "cat.jpg").exists():
        pytest.skip(f"real test photos not found in {path.name}/ (expected ../shared/photos)")
    return path


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(scope="session")
def tiny_settings(tmp_path_factory) -> Settings:
    """Settings whose models dir holds one saved tiny model, ``tiny-cnn@1``, marked active."""
    from imgrec.registry import catalog

    settings = make_settings(tmp_path_factory.mktemp("tiny"))
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    catalog.set_active_model("tiny-cnn", "1", settings)
    return settings


@pytest.fixture(scope="session")
def tiny_predictor(tiny_settings):
    from imgrec.inference.predictor import Predictor

    return Predictor.load("tiny-cnn", "1", tiny_settings)


@pytest.fixture(scope="session")
def imagenet_settings(tmp_path_factory) -> Settings:
    """Settings with the real ImageNet MobileNetV2 registered (offline weights via KERAS_HOME)."""
    from imgrec.registry import catalog

    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    if not (keras_home / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5").exists():
        pytest.skip("ImageNet MobileNetV2 weights not in KERAS_HOME (run through `make test`)")
    settings = make_settings(tmp_path_factory.mktemp("imagenet"))
    catalog.ensure_default_model(settings)
    return settings


@pytest.fixture(scope="session")
def imagenet_predictor(imagenet_settings):
    from imgrec.inference.predictor import Predictor

    return Predictor.load(None, None, imagenet_settings)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def detector_settings(tmp_path_factory) -> Settings:
    """Settings with both shipped detectors registered (from ../shared/detection); the classifier stays default."""
    from imgrec.registry import catalog
    from imgrec.registry.detector_cards import STOCK_DETECTORS

    settings = make_settings(tmp_path_factory.mktemp("detectors"))
    if not settings.shared_detection_dir.is_dir():
        pytest.skip("shipped detectors not found (expected ../shared/detection)")
    for name in STOCK_DETECTORS:
        catalog.ensure_stock_detector(name, settings)
    return settings


@pytest.fixture(scope="session")
def detector_predictor(detector_settings):
    from imgrec.inference.predictor import Predictor
    from imgrec.registry.detector_cards import DEFAULT_DETECTOR

    return Predictor.load(DEFAULT_DETECTOR, None, detector_settings)


@pytest.fixture(autouse=True)
def no_stock_detectors_in_the_shared_tiny_models(request, monkeypatch, tmp_path_factory):
    """The app's model list registers the stock detectors into its models folder; a test on the session's
    shared tiny models folder must not leave them there for the tests after it (``detector_settings`` has its own)."""
    if "tiny_settings" in request.fixturenames and "detector_settings" not in request.fixturenames:
        monkeypatch.setenv("IMGREC_SHARED_DETECTION_DIR", str(tmp_path_factory.getbasetemp() / "no-detectors"))

"""Shared fixtures: isolated settings, a tiny real model, and the real ImageNet default model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from imgrec.core.settings import PROJECT_ROOT, Settings
from imgrec.tasks.classification import ClassificationTask

CLASSIFICATION = ClassificationTask()

TINY_CLASSES = ("cat", "dog", "bird")
TINY_SIZE = (32, 32)


def shared_dir() -> Path:
    return PROJECT_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    path = Path(os.environ.get("IMGREC_SAMPLES_DIR", shared_dir() / "photos"))
    if not (path / "cat.jpg").exists():
        pytest.skip(f"real test photos not found in {path.name}/ (expected ../shared/photos)")
    return path


def make_settings(root: Path, **overrides) -> Settings:
    values = dict(models_dir=root / "models", data_dir=root / "data", samples_dir=root / "samples")
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


def build_tiny_model(seed: int = 0):
    """A real (untrained but deterministic) small CNN: every code path runs, in milliseconds."""
    import keras

    from imgrec.modeling.build import build_model

    keras.utils.set_random_seed(seed)
    return build_model("small_cnn", len(TINY_CLASSES), TINY_SIZE, weights=None, head=CLASSIFICATION.head)


def tiny_card(name: str = "tiny-cnn", version: str = ""):
    from imgrec.registry.card import ModelCard

    return ModelCard(
        name=name,
        version=version,
        backbone="small_cnn",
        input_size=TINY_SIZE,
        preprocessing="unit",
        class_names=TINY_CLASSES,
        dataset="generated",
    )


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

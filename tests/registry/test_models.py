"""Model cards, the on-disk registry, and model building: round trips and clear failures."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from imgrec.core.errors import ModelError
from imgrec.core.files import sha256_file
from imgrec.modeling.backbones import BACKBONES
from imgrec.modeling.build import Preprocess, build_model
from imgrec.registry import catalog
from imgrec.registry.card import CARD_FILE, MODEL_FILE, ModelCard
from tests.helpers.models import CLASSIFICATION, TINY_SIZE, build_tiny_model, tiny_card


def test_card_json_round_trip(tmp_path):
    card = tiny_card(version="3").with_updates(metrics={"accuracy": 0.9}, files={"model.keras": "ab"})
    card.save(tmp_path)
    assert ModelCard.load(tmp_path) == card
    assert json.loads((tmp_path / CARD_FILE).read_text())["class_names"] == ["cat", "dog", "bird"]


def test_card_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(ModelError, match="No model card"):
        ModelCard.load(tmp_path)
    (tmp_path / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        ModelCard.load(tmp_path)
    (tmp_path / CARD_FILE).write_text(json.dumps({"name": "x", "version": "1"}))
    with pytest.raises(ModelError, match="missing backbone, class_names, dataset, input_size, preprocessing"):
        ModelCard.load(tmp_path)
    with pytest.raises(ModelError, match="no class names"):
        tiny_card().with_updates(class_names=())


def test_saved_model_reloads_and_predicts_the_same(settings, rng):
    model = build_tiny_model()
    card = catalog.save_model(model, tiny_card(), settings)
    assert card.version == "1" and card.files[MODEL_FILE] == sha256_file(catalog.model_dir("tiny-cnn", "1", settings) / MODEL_FILE)
    reloaded, loaded_card = catalog.load_model("tiny-cnn", "1", settings)
    assert loaded_card == card
    batch = rng.integers(0, 256, (4, *TINY_SIZE, 3)).astype("uint8")
    np.testing.assert_allclose(reloaded(batch), model(batch), atol=1e-6)
    assert catalog.save_model(model, tiny_card(), settings).version == "2"
    assert catalog.versions("tiny-cnn", settings) == ["1", "2"]


def test_a_version_saved_meanwhile_by_another_process_is_refused_cleanly(settings, monkeypatch):
    import tempfile

    folder = settings.models_dir / "tiny-cnn"
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp_while_another_process_saves_version_1(**kwargs):
        if kwargs.get("dir") == folder:  # the registry's staging folder (Keras makes temp dirs too)
            (folder / "1").mkdir()  # its rename lands after our existence check, before ours
            (folder / "1" / CARD_FILE).write_text("{}")
        return real_mkdtemp(**kwargs)

    monkeypatch.setattr(catalog.tempfile, "mkdtemp", mkdtemp_while_another_process_saves_version_1)
    with pytest.raises(ModelError, match="Model tiny-cnn@1 already exists. Expected a new version."):
        catalog.save_model(build_tiny_model(), tiny_card(), settings)
    assert [p.name for p in folder.iterdir()] == ["1"]  # ours cleaned up, theirs untouched
    assert [p.name for p in (folder / "1").iterdir()] == [CARD_FILE]


def test_saving_refuses_a_card_that_does_not_match(settings):
    with pytest.raises(ModelError, match="has 3 outputs, but its card lists 4 class names"):
        catalog.save_model(build_tiny_model(), tiny_card().with_updates(class_names=("a", "b", "c", "d")), settings)
    with pytest.raises(ModelError, match=r"takes input \(32, 32, 3\), but its card says \(64, 64, 3\)"):
        catalog.save_model(build_tiny_model(), tiny_card().with_updates(input_size=(64, 64)), settings)
    assert not (settings.models_dir / "tiny-cnn").exists()  # refused before anything is written


def test_loading_refuses_a_card_edited_to_mismatch(settings):
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    folder = catalog.model_dir("tiny-cnn", "1", settings)
    data = json.loads((folder / CARD_FILE).read_text())
    data["class_names"].append("fish")
    (folder / CARD_FILE).write_text(json.dumps(data))
    with pytest.raises(ModelError, match="has 3 outputs, but its card lists 4 class names"):
        catalog.load_model("tiny-cnn", "1", settings)


def test_truncated_model_file_is_refused_by_checksum(settings):
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    path = catalog.model_dir("tiny-cnn", "1", settings) / MODEL_FILE
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelError, match="corrupt or was replaced"):
        catalog.load_model("tiny-cnn", "1", settings)


def test_corrupt_model_with_matching_checksum_gives_a_clear_error(settings):
    card = catalog.save_model(build_tiny_model(), tiny_card(), settings)
    folder = catalog.model_dir("tiny-cnn", "1", settings)
    (folder / MODEL_FILE).write_bytes(b"this is not a keras archive")
    card.with_updates(files={MODEL_FILE: sha256_file(folder / MODEL_FILE)}).save(folder)
    with pytest.raises(ModelError, match="Could not load model tiny-cnn@1"):
        catalog.load_model("tiny-cnn", "1", settings)


def test_lambda_layer_is_refused_by_safe_mode(settings):
    inputs = keras.Input((*TINY_SIZE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    catalog.save_model(keras.Model(inputs, outputs), tiny_card("lambda-model"), settings)
    with pytest.raises(ModelError, match="(?i)lambda"):
        catalog.load_model("lambda-model", "1", settings)


def test_resolve_names_what_exists(settings):
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    with pytest.raises(ModelError, match="No model named 'nope'. Available models: tiny-cnn"):
        catalog.resolve("nope", None, settings)
    with pytest.raises(ModelError, match="has no version '9'. Available versions: 1"):
        catalog.resolve("tiny-cnn", "9", settings)


def test_active_model_marker(settings):
    # No marker: the default model, which does not exist in this empty models dir.
    assert catalog.active_model(settings) == (settings.default_model, None)
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    assert catalog.set_active_model("tiny-cnn", "1", settings) == ("tiny-cnn", "1")
    assert catalog.resolve(None, None, settings) == ("tiny-cnn", "1")
    with pytest.raises(ModelError, match="is the active model"):
        catalog.delete_version("tiny-cnn", "1", settings)
    catalog.delete_version("tiny-cnn", "2", settings)
    assert catalog.versions("tiny-cnn", settings) == ["1"]
    settings.active_model_file.write_text("garbage")
    assert catalog.active_model(settings) == (settings.default_model, None)


@pytest.mark.parametrize("mode, pixel, expected", [
    ("mobilenet_v2", [0.0, 127.5, 255.0], [-1.0, 0.0, 1.0]),
    ("unit", [0.0, 51.0, 255.0], [0.0, 0.2, 1.0]),
    ("caffe", [10.0, 20.0, 30.0], [30 - 103.939, 20 - 116.779, 10 - 123.68]),
    ("none", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
])
def test_preprocess_modes(mode, pixel, expected):
    out = Preprocess(mode)(np.array([[[pixel]]], np.float32))
    np.testing.assert_allclose(np.asarray(out)[0, 0, 0], expected, rtol=1e-5)


def test_preprocess_matches_keras_applications():
    batch = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        Preprocess("mobilenet_v2")(batch), keras.applications.mobilenet_v2.preprocess_input(batch.copy()), atol=1e-5
    )
    np.testing.assert_allclose(
        Preprocess("caffe")(batch), keras.applications.resnet50.preprocess_input(batch.copy()), atol=1e-4
    )


def test_unknown_backbone_and_preprocessing_are_refused():
    with pytest.raises(ModelError, match="Unknown backbone 'vgg'. Expected one of: mobilenet_v2"):
        build_model("vgg", 3, head=CLASSIFICATION.head)
    with pytest.raises(ModelError, match="Unknown preprocessing"):
        Preprocess("zscore")
    for backbone in ("small_cnn", "mobilenet_v2"):  # whether or not the backbone has pretrained weights
        with pytest.raises(ModelError, match="weights='imagenet21k'. Expected 'imagenet' or None."):
            build_model(backbone, 3, weights="imagenet21k", head=CLASSIFICATION.head)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_every_backbone_builds_saves_and_reloads(backbone, settings, rng):
    model = build_model(backbone, 4, (32, 32), weights=None, head=CLASSIFICATION.head)
    card = ModelCard(
        name=f"t-{backbone}", version="", backbone=backbone, input_size=(32, 32),
        preprocessing=BACKBONES[backbone].preprocessing, class_names=("a", "b", "c", "d"), dataset="none",
    )
    catalog.save_model(model, card, settings)
    reloaded, _ = catalog.load_model(card.name, None, settings)
    batch = rng.integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    np.testing.assert_allclose(reloaded(batch), model(batch), atol=1e-5)
    assert model.output_shape == (None, 4)


def test_mobilenet_imagenet_weights_serve_any_input_size(imagenet_settings):
    # Offline, only 224x224 weights exist; a 96x96 model must reuse them, not download or start random.
    model = build_model("mobilenet_v2", 3, (96, 96), weights="imagenet", head=CLASSIFICATION.head)
    stock = keras.applications.MobileNetV2(include_top=False, weights="imagenet", input_shape=(224, 224, 3))
    backbone = model.get_layer("backbone")
    for ours, theirs in zip(backbone.get_weights(), stock.get_weights()):
        np.testing.assert_array_equal(ours, theirs)

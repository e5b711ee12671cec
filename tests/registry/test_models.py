"""Model cards and the on-disk registry: round trips and clear failures."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from imgrec.core.errors import ModelError
from imgrec.core.files import sha256_file
from imgrec.registry import catalog
from imgrec.registry.card import CARD_FILE, MODEL_FILE, ModelCard
from tests.helpers.models import TINY_SIZE, build_tiny_model, tiny_card


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

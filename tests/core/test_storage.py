"""Storage under an fsspec URL against a real S3 API (moto's server on localhost): atomic objects, checksums,
and the model registry and kept uploads end to end on the bucket."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import numpy as np
import pytest

from imgrec.core.errors import ModelError, SettingsError
from imgrec.core.settings import Settings
from imgrec.core.storage import Storage, StorageError, storage_for
from imgrec.registry import catalog
from tests.helpers.buckets import make_bucket, moto_s3
from tests.helpers.cli import run_cli
from tests.helpers.models import build_tiny_model, tiny_card
from tests.helpers.settings import make_settings, settings_env


@pytest.fixture(scope="module")
def s3_env():
    with moto_s3() as env:
        yield env


@pytest.fixture
def bucket(s3_env, request):
    return make_bucket(f"t-{request.node.name.replace('_', '-')[:50].lower()}")


def test_objects_are_written_whole_and_checked_on_read(bucket):
    storage = Storage(f"{bucket}/prefix")
    data = b"\x89PNG not really" * 100
    storage.write_bytes("a/b.bin", data)
    assert storage.read_bytes("a/b.bin", sha256=hashlib.sha256(data).hexdigest()) == data
    assert storage.list_names("") == ["a"] and storage.list_names("a") == ["b.bin"]
    storage.write_bytes("a/b.bin", b"replaced")
    with pytest.raises(StorageError, match=r"a/b.bin' has checksum .* The file is corrupt or was replaced"):
        storage.read_bytes("a/b.bin", sha256=hashlib.sha256(data).hexdigest())
    storage.delete("a")
    assert not storage.exists("a/b.bin") and storage.list_names("a") == []
    with pytest.raises(StorageError, match=r"'s3://.*/prefix/gone' does not exist"):
        storage.read_bytes("gone")


def test_a_local_folder_is_a_storage_too(tmp_path):
    storage = Storage(str(tmp_path / "store"))
    storage.write_bytes("x/y.txt", b"hello")
    assert (tmp_path / "store" / "x" / "y.txt").read_bytes() == b"hello"
    assert [p.name for p in (tmp_path / "store" / "x").iterdir()] == ["y.txt"]  # no temp file left


def test_an_unusable_storage_url_names_the_variable():
    with pytest.raises(SettingsError, match=r"IMGREC_STORAGE_URL='nosuch://b/p'.*Expected a folder or a URL"):
        storage_for(Settings(storage_url="nosuch://b/p"))


def test_registry_lives_in_the_bucket(bucket, tmp_path, photos_dir):
    from imgrec.core.images import decode_image
    from imgrec.inference.predictor import Predictor

    url = f"{bucket}/registry"
    here = make_settings(tmp_path / "here", storage_url=url)
    catalog.save_model(build_tiny_model(), tiny_card(), here)
    assert Storage(url).list_names("models/tiny-cnn/1") == ["card.json", "model.keras"]

    # Another machine: nothing local, the same bucket.
    there = make_settings(tmp_path / "there", storage_url=url)
    assert catalog.model_names(there) == ["tiny-cnn"] and catalog.versions("tiny-cnn", there) == ["1"]
    image = decode_image(photos_dir / "cat.jpg")
    local = Predictor.load("tiny-cnn", "1", here).predict_outputs([image])
    fetched = Predictor.load("tiny-cnn", "1", there).predict_outputs([image])
    np.testing.assert_array_equal(local, fetched)
    # A version saved there is numbered after what the bucket holds, and seen here.
    assert catalog.save_model(build_tiny_model(seed=1), tiny_card(), there).version == "2"
    assert catalog.versions("tiny-cnn", here) == ["1", "2"]

    # A replaced model file in the bucket is refused on load by its card's checksum.
    Storage(url).write_bytes("models/tiny-cnn/2/model.keras", b"not a model")
    third = make_settings(tmp_path / "third", storage_url=url)
    with pytest.raises(ModelError, match=r"file 'model.keras' has checksum .* expected"):
        catalog.load_model("tiny-cnn", "2", third)

    catalog.delete_version("tiny-cnn", "2", there)
    assert catalog.versions("tiny-cnn", here) == ["1"]
    assert Storage(url).list_names("models/tiny-cnn") == ["1"]


def test_kept_uploads_live_in_the_bucket(bucket, tmp_path, photos_dir, s3_env, monkeypatch):
    import streamlit as st
    from PIL import Image

    from imgrec.core.settings import get_settings
    from imgrec.predlog.store import open_store
    from ui import cache

    url = f"{bucket}/state"
    settings = make_settings(tmp_path, storage_url=url, keep_uploads=True)
    catalog.save_model(build_tiny_model(), tiny_card(), settings)
    result = run_cli(["predict", str(photos_dir / "cat.jpg"), "--model", "tiny-cnn", "--json"], settings,
                     IMGREC_STORAGE_URL=url, IMGREC_KEEP_UPLOADS="1", **s3_env)
    assert result.returncode == 0, result.stderr
    prediction_id = json.loads(result.stdout)["prediction_id"]
    data = (photos_dir / "cat.jpg").read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert Storage(url).read_bytes(f"uploads/{digest[:2]}/{digest}.jpg", sha256=digest) == data
    assert not settings.uploads_dir.exists()  # nothing kept locally
    with open_store(settings) as store:
        stored_path = store.get_prediction(prediction_id)["stored_path"]
        assert store.read_upload(stored_path) == data
        # The review queue's thumbnail of it comes from the bucket too (the app reads the same settings).
        for name, value in {**settings_env(settings), "IMGREC_STORAGE_URL": url, "IMGREC_KEEP_UPLOADS": "1"}.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        st.cache_resource.clear()
        st.cache_data.clear()
        try:
            thumbnail = cache.thumbnail(stored_path)
        finally:
            get_settings.cache_clear()
            st.cache_resource.clear()
        assert thumbnail.startswith("data:image/jpeg;base64,")
        with Image.open(io.BytesIO(base64.b64decode(thumbnail.split(",", 1)[1]))) as small:
            assert max(small.size) == 96 and small.format == "JPEG"
        assert store.prune_uploads(0) == 1
        assert store.get_prediction(prediction_id)["stored_path"] is None
    assert not Storage(url).exists(f"uploads/{digest[:2]}/{digest}.jpg")


def test_exports_follow_the_model_into_the_bucket(bucket, tmp_path):
    from imgrec.export import exporter
    from imgrec.registry import exports

    url = f"{bucket}/registry"
    here = make_settings(tmp_path / "here", storage_url=url)
    catalog.save_model(build_tiny_model(), tiny_card(), here)
    [result] = exporter.export_model("tiny-cnn", "1", ["tflite-fp32"], here)
    assert result.ok, result.reason
    exports.set_serving_backend("tiny-cnn", "1", "tflite-fp32", here)

    there = make_settings(tmp_path / "there", storage_url=url)
    assert exports.serving_backend("tiny-cnn", "1", there) == "tflite-fp32"
    exports.verify_export("tiny-cnn", "1", "tflite-fp32", there)  # the fetched files match their recorded checksums
    assert not any(name.startswith(".") for name in Storage(url).list_names("models/tiny-cnn/1/exports"))

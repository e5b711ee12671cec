"""Exports, parity reports and serving backends: a tiny model in every format, honest numbers, tampering."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from imgrec.core.errors import ModelError
from imgrec.export import exporter
from imgrec.inference import runtimes
from imgrec.inference.predictor import Predictor
from imgrec.registry import catalog, exports
from imgrec.tasks import classification
from imgrec.tasks.base import DecodeOptions
from tests.helpers.export import requires_export_runtimes
from tests.helpers.models import CLASSIFICATION, build_tiny_model, tiny_card
from tests.helpers.settings import make_settings

pytestmark = requires_export_runtimes


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """tiny-cnn@1 exported to every format; also returns the in-memory model from before saving."""
    settings = make_settings(tmp_path_factory.mktemp("export"))
    model = build_tiny_model()
    catalog.save_model(model, tiny_card(), settings)
    results = exporter.export_model("tiny-cnn", "1", None, settings)
    return settings, model, results


def test_every_format_is_exported_and_reported(exported):
    settings, _, results = exported
    assert [r.format for r in results] == list(exports.FORMATS)
    folder = catalog.model_dir("tiny-cnn", "1", settings)
    report = json.loads((folder / "exports" / "parity.json").read_text())
    assert list(report["exports"]) == list(exports.FORMATS)
    assert report["held_out"]["source"] == "generated" and "generated" in report["held_out"]["description"]
    assert report["keras"]["latency_ms"] > 0
    for result in results:
        assert result.status in (exports.STATUS_OK, exports.STATUS_DIVERGING), (result.format, result.reason)
        assert (folder / result.path).exists() and result.size_bytes > 0
        assert result.latency_ms > 0 and result.held_out_images == exporter.HELD_OUT_IMAGES
        assert 0 <= result.figures["top1_agreement"] <= 1 and 0 <= result.figures["top5_overlap"] <= 1
        assert result.files and all(len(digest) == 64 for digest in result.files.values())
    # Lossless formats agree exactly; float16 and int8 are smaller than float32.
    by_format = {r.format: r for r in results}
    for fmt in ("savedmodel", "tflite-fp32", "onnx"):
        assert by_format[fmt].ok and by_format[fmt].figures["top1_agreement"] == 1.0 and by_format[fmt].figures["max_prob_diff"] < 1e-4
    assert by_format["tflite-fp16"].size_bytes < 0.6 * by_format["tflite-fp32"].size_bytes
    assert by_format["tflite-int8"].size_bytes < 0.35 * by_format["tflite-fp32"].size_bytes
    assert by_format["tflite-int8"].figures["max_prob_diff"] < 0.05
    assert all(r.summary().startswith(r.format) and r.status in r.summary() for r in results)
    # No temp folders left behind.
    assert not [p.name for p in (folder / "exports").iterdir() if p.name.startswith(".") and p.name != ".lock"]


def test_parity_figures_are_computed_honestly(exported):
    """Recompute every figure independently, from the files on disk, and compare with the report."""
    settings, model, results = exported
    card = catalog.load_card("tiny-cnn", "1", settings)
    held_out, _ = exporter.evaluation_data(card, settings)
    reference = model.predict(held_out.images, verbose=0)
    folder = catalog.model_dir("tiny-cnn", "1", settings)
    for result in results:
        probabilities = runtimes.open_backend(result.format, folder / result.path, card).predict_batch(held_out.images)
        top1 = np.mean(reference.argmax(1) == probabilities.argmax(1))
        assert result.figures["top1_agreement"] == pytest.approx(top1, abs=1e-4), result.format
        assert result.figures["max_prob_diff"] == pytest.approx(np.abs(reference - probabilities).max(), abs=1e-5)
        expected = exports.STATUS_OK if top1 >= classification.MIN_TOP1_AGREEMENT else exports.STATUS_DIVERGING
        assert result.status == expected, result.format
        if result.status == exports.STATUS_DIVERGING:
            assert "top-1 agrees" in result.reason


def test_reloaded_exports_predict_as_the_model_did_before_saving(exported, rng):
    settings, model, _ = exported
    images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    before = model.predict(images, verbose=0)
    for fmt in ("savedmodel", "tflite-fp32", "onnx"):
        backend = runtimes.load_backend("tiny-cnn", "1", fmt, settings)
        np.testing.assert_allclose(backend.predict_batch(images), before, atol=1e-5, err_msg=fmt)
        # Batches above the chunk size and of size one go through the same path.
        big = np.concatenate([images] * 8)
        np.testing.assert_allclose(backend.predict_batch(big)[-5:], before, atol=1e-5, err_msg=fmt)
        assert backend.predict_batch(images[:0]).shape == (0, 3)


def test_export_predictor_gives_the_same_top_k(exported, rng):
    settings, _, _ = exported
    keras_predictor = Predictor.load("tiny-cnn", "1", settings)
    served = Predictor.load("tiny-cnn", "1", settings, backend="onnx")
    assert isinstance(served, Predictor) and served.backend_name == "onnx"
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8) for _ in range(3)]
    expected = [result.predictions for result in keras_predictor.predict(images, DecodeOptions(top_k=3))]
    got = [result.predictions for result in served.predict(images, DecodeOptions(top_k=3))]
    assert [[p.label for p in row] for row in got] == [[p.label for p in row] for row in expected]
    assert np.allclose([[p.score for p in row] for row in got], [[p.score for p in row] for row in expected], atol=1e-5)


def test_serving_backend_choice_is_per_version(exported):
    settings, _, _ = exported
    assert exports.serving_backend("tiny-cnn", "1", settings) == "keras"
    assert "tflite-fp32" in exports.serving_choices("tiny-cnn", "1", settings)
    exports.set_serving_backend("tiny-cnn", "1", "tflite-fp32", settings)
    try:
        assert exports.serving_backend("tiny-cnn", "1", settings) == "tflite-fp32"
        predictor = Predictor.load("tiny-cnn", "1", settings)
        assert predictor.backend_name == "tflite-fp32"
    finally:
        exports.set_serving_backend("tiny-cnn", "1", "keras", settings)
    with pytest.raises(exports.ExportError, match="Unknown export format"):
        exports.set_serving_backend("tiny-cnn", "1", "caffe2", settings)


def _tampered_copy(settings, tmp_path, fmt="tflite-fp32"):
    """A copy of the exported models whose TFLite float weights are perturbed (shapes and ops untouched)."""
    from tensorflow.lite.tools import flatbuffer_utils

    copy = make_settings(tmp_path)
    shutil.copytree(settings.models_dir, copy.models_dir)
    path = exports.export_path("tiny-cnn", "1", fmt, copy)
    tflite = flatbuffer_utils.read_model(str(path))
    rng = np.random.default_rng(3)
    for tensor in tflite.subgraphs[0].tensors:
        data = tflite.buffers[tensor.buffer].data
        if tensor.type == 0 and data is not None and len(data) >= 4 * 64:  # FLOAT32 weights, not small constants
            weights = np.frombuffer(bytes(data), np.float32)
            noisy = weights + rng.normal(0, 2 * (weights.std() + 1e-3), weights.shape).astype(np.float32)
            tflite.buffers[tensor.buffer].data = np.frombuffer(noisy.tobytes(), np.uint8)
    flatbuffer_utils.write_model(tflite, str(path))
    return copy


def test_a_tampered_export_is_reported_as_diverging_and_refused(exported, tmp_path):
    settings, _, _ = exported
    copy = _tampered_copy(settings, tmp_path)
    result = exporter.check_export("tiny-cnn", "1", "tflite-fp32", copy)
    assert result.status == exports.STATUS_DIVERGING, result.reason
    assert result.figures["top1_agreement"] < classification.MIN_TOP1_AGREEMENT and result.figures["max_prob_diff"] > 0.05
    assert "files changed since export" in result.reason
    saved = exports.read_parity("tiny-cnn", "1", copy)["exports"]["tflite-fp32"]
    assert saved["status"] == exports.STATUS_DIVERGING
    with pytest.raises(exports.ExportError):
        runtimes.load_backend("tiny-cnn", "1", "tflite-fp32", copy)
    with pytest.raises(exports.ExportError, match="diverging"):
        exports.set_serving_backend("tiny-cnn", "1", "tflite-fp32", copy)


def test_a_converter_failure_is_a_failed_result_not_a_crash(tmp_path, monkeypatch):
    settings = make_settings(tmp_path)
    catalog.save_model(build_tiny_model(), tiny_card(), settings)

    def broken(self):
        raise RuntimeError("ONNX conversion is not supported for op FooBar")

    monkeypatch.setattr(exporter._Converter, "_onnx", broken)
    [result] = exporter.export_model("tiny-cnn", "1", ["onnx"], settings)
    assert result.status == exports.STATUS_FAILED and "FooBar" in result.reason
    assert exports.read_parity("tiny-cnn", "1", settings)["exports"]["onnx"]["status"] == exports.STATUS_FAILED
    assert not (catalog.model_dir("tiny-cnn", "1", settings) / "exports" / "onnx").exists()
    with pytest.raises(exports.ExportError, match="failed"):
        runtimes.load_backend("tiny-cnn", "1", "onnx", settings)


def test_held_out_and_calibration_come_from_the_training_dataset(tmp_path):
    """A trained model's report.json names its dataset: calibration from val, held-out from test, disjoint."""
    from PIL import Image

    root = tmp_path / "shapes"
    for index, name in enumerate(("cat", "dog", "bird")):
        (root / name).mkdir(parents=True)
        for i, image in enumerate(exporter.generated_images((40, 40), 12, seed=10 * index + 1)):
            Image.fromarray(image).save(root / name / f"{i}.png")
    settings = make_settings(tmp_path)
    card = tiny_card().with_updates(dataset="shapes", class_names=("bird", "cat", "dog"))  # folder classes sort
    card = catalog.save_model(build_tiny_model(), card, settings)
    folder = catalog.model_dir(card.name, card.version, settings)
    (folder / "report.json").write_text(json.dumps({"config": {"dataset": str(root)}}))
    held_out, calibration = exporter.evaluation_data(card, settings)
    assert held_out.source == calibration.source == "dataset", held_out.description
    assert "test split" in held_out.description and "validation split" in calibration.description
    assert held_out.images.shape[1:] == (32, 32, 3) and held_out.images.dtype == np.uint8
    held = {image.tobytes() for image in held_out.images}
    assert not held & {image.tobytes() for image in calibration.images}
    # Without the report, the card's dataset name alone does not point to any data: generated images.
    (folder / "report.json").unlink()
    assert exporter.evaluation_data(card, settings)[0].source == "generated"


def test_format_names_and_missing_models(tmp_path):
    assert exports.parse_formats(None) == list(exports.FORMATS)
    assert exports.parse_formats("onnx, tflite-int8") == ["tflite-int8", "onnx"]
    with pytest.raises(exports.ExportError, match="Expected any of"):
        exports.parse_formats(["tflite-int4"])
    with pytest.raises(ModelError, match="No model named"):
        exporter.export_model("nope", None, ["onnx"], make_settings(tmp_path))


def test_savedmodel_download_is_a_zip(exported):
    import io
    import zipfile

    settings, _, _ = exported
    name, data = exports.download_bytes("tiny-cnn", "1", "savedmodel", settings)
    assert name.endswith(".zip")
    assert "savedmodel/saved_model.pb" in zipfile.ZipFile(io.BytesIO(data)).namelist()


@pytest.fixture(scope="module")
def imagenet_exports(imagenet_settings, photos_dir):
    """The ImageNet model exported once to every format; held out: just the real photos (no variants)."""
    from imgrec.core.samples import list_samples

    settings = dataclasses.replace(imagenet_settings, samples_dir=photos_dir)
    samples = list_samples(settings)
    # All six formats take ~45 s here (the quantized TFLite ones ~25 s of it); just the photos keeps it there.
    results = exporter.export_model(None, None, None, settings, held_out_images=len(samples))
    assert [r.format for r in results] == list(exports.FORMATS)
    return settings, samples, {r.format: r for r in results}


@pytest.mark.slow
def test_every_backend_gives_the_same_top1_on_real_photos(imagenet_exports):
    """The ImageNet model: Keras, each lossless export and float16 agree on the top-1 of every real photo."""
    from imgrec.core.images import decode_image

    settings, samples, results = imagenet_exports
    formats = ["savedmodel", "tflite-fp32", "tflite-fp16", "onnx"]
    assert all(results[f].ok for f in formats), [(f, results[f].reason) for f in formats]
    assert {r.held_out_images for r in results.values()} == {len(samples)}
    keras_predictor = Predictor.load(None, None, settings)
    photos = [decode_image(path) for path in samples.values()]
    expected = [result.top.label for result in keras_predictor.predict(photos, DecodeOptions(top_k=1))]
    assert expected[list(samples).index("cat.jpg")] in {"tabby", "tiger cat", "Egyptian cat"}
    batch = keras_predictor.prepare(photos)
    for fmt in formats:
        probabilities = runtimes.load_backend(settings.default_model, "1", fmt, settings).predict_batch(batch)
        assert [keras_predictor.card.class_names[i] for i in probabilities.argmax(1)] == expected, fmt
    for fmt in ("tflite-fp32", "tflite-fp16"):
        served = Predictor.load(None, None, settings, backend=fmt)
        assert served.backend_name == fmt
        assert [result.top.label for result in served.predict(photos, DecodeOptions(top_k=1))] == expected, fmt


@pytest.mark.slow
def test_quantized_tflite_exports_report_their_parity_on_real_photos_honestly(imagenet_exports):
    """Dynamic-range and full-integer int8 are lossy: their recorded figures are what their runtime gives,
    their status follows from those figures, and serving follows the status.

    Measured on the 16 photos: both are below 97 % top-1 (dynamic 14/16, int8 15/16 and top-5 66 %), so both
    are "diverging" and refused for serving. Dynamic still agrees on every photo Keras scores >= 0.5 (the
    closest by 0.04); int8 flips one of them (a dog Keras scores 0.56), so that is not asserted for int8.
    """
    settings, samples, results = imagenet_exports
    name = settings.default_model
    keras_predictor = Predictor.load(None, None, settings)
    card = keras_predictor.card
    held_out, _ = exporter.evaluation_data(card, settings, held_out=len(samples))
    assert held_out.source == "sample-photos" and len(held_out.images) == len(samples)
    reference = keras_predictor.predict_batch(held_out.images)
    confident = reference.max(1) >= classification.CONFIDENT_SCORE
    assert confident.sum() >= len(samples) // 2
    folder = catalog.model_dir(name, "1", settings)
    recorded = exports.read_parity(name, "1", settings)["exports"]
    for fmt in ("tflite-dynamic", "tflite-int8"):
        result = results[fmt]
        assert result.status in (exports.STATUS_OK, exports.STATUS_DIVERGING), (fmt, result.reason)
        assert (recorded[fmt]["status"], recorded[fmt]["reason"], recorded[fmt]["figures"]) == (
            result.status, result.reason, result.figures)
        assert fmt in result.summary() and result.status in result.summary()
        # Its runtime runs it (the backend class serving uses) and the figures are recomputed from its output.
        probabilities = runtimes.open_backend(fmt, folder / result.path, card).predict_batch(held_out.images)
        assert probabilities.shape == reference.shape and np.isfinite(probabilities).all()
        agrees = reference.argmax(1) == probabilities.argmax(1)
        assert result.figures["top1_agreement"] == pytest.approx(agrees.mean(), abs=1e-4), fmt
        assert result.figures["confident_images"] == confident.sum()
        assert result.figures["confident_top1_agreement"] == pytest.approx(agrees[confident].mean(), abs=1e-4), fmt
        assert result.figures["max_prob_diff"] == pytest.approx(np.abs(reference - probabilities).max(), abs=1e-5), fmt
        judgement = CLASSIFICATION.parity(reference, probabilities, card)
        status = exports.STATUS_OK if judgement.ok else exports.STATUS_DIVERGING
        assert (result.status, result.reason, result.figures) == (status, judgement.reason, judgement.figures), fmt
        if result.ok:
            served = runtimes.load_backend(name, "1", fmt, settings).predict_batch(held_out.images)
            np.testing.assert_array_equal(served.argmax(1), probabilities.argmax(1), err_msg=fmt)
            assert fmt in exports.serving_choices(name, "1", settings)
        else:
            assert "below" in result.reason
            assert fmt not in exports.serving_choices(name, "1", settings)
            for refused in (lambda fmt=fmt: runtimes.load_backend(name, "1", fmt, settings),
                            lambda fmt=fmt: Predictor.load(None, None, settings, backend=fmt),
                            lambda fmt=fmt: exports.set_serving_backend(name, "1", fmt, settings)):
                with pytest.raises(exports.ExportError, match="diverging"):
                    refused()
    assert results["tflite-dynamic"].figures["confident_top1_agreement"] == 1.0

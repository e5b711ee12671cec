"""Exports of the shipped XL detector with the detection parity report: TFLite float32 and ONNX agree with
Keras box for box on the sample photos; a detector judged on images where Keras finds nothing is refused."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from imgrec.export.exporter import export_model
from imgrec.inference.predictor import Predictor
from imgrec.registry import exports
from imgrec.registry.detector_cards import DEFAULT_DETECTOR
from tests.helpers.export import requires_export_runtimes
from tests.helpers.settings import make_settings

pytestmark = [pytest.mark.slow, requires_export_runtimes]
HELD_OUT = 24


def copy_of_the_detector(detector_settings, root, **overrides):
    settings = make_settings(root, **overrides)
    shutil.copytree(detector_settings.models_dir / DEFAULT_DETECTOR, settings.models_dir / DEFAULT_DETECTOR)
    return settings


def test_tflite_and_onnx_match_keras_box_for_box(detector_settings, photos_dir, tmp_path):
    settings = copy_of_the_detector(detector_settings, tmp_path, samples_dir=photos_dir)
    results = {r.format: r for r in export_model(DEFAULT_DETECTOR, None, ["tflite-fp32", "onnx"], settings,
                                                 held_out_images=HELD_OUT)}
    for fmt, result in results.items():
        assert result.status == exports.STATUS_OK, (fmt, result.reason)
        figures = result.figures
        assert figures["reference_boxes"] > HELD_OUT  # the photos hold many objects: a real comparison
        assert figures["matched_share"] >= 0.97 and figures["label_agreement"] == 1.0, (fmt, figures)
        assert figures["mean_iou"] > 0.99 and figures["max_score_diff"] < 0.01, (fmt, figures)
        assert result.headline.startswith("matched")
    # The export serves: same boxes as Keras on a real photo, through the Predictor.
    exports.set_serving_backend(DEFAULT_DETECTOR, "1", "onnx", settings)
    served = Predictor.load(DEFAULT_DETECTOR, None, settings)
    keras = Predictor.load(DEFAULT_DETECTOR, None, settings, backend="keras")
    from imgrec.core.images import decode_image

    photo = decode_image(photos_dir / "pets.jpg")
    [by_onnx], [by_keras] = served.predict([photo]), keras.predict([photo])
    assert served.backend_name == "onnx"
    assert [d.label for d in by_onnx.detections] == [d.label for d in by_keras.detections] == ["dog", "dog"]
    assert np.allclose([d.box for d in by_onnx.detections], [d.box for d in by_keras.detections], atol=0.5)


def test_a_detector_with_nothing_to_find_is_refused(detector_settings, tmp_path):
    settings = copy_of_the_detector(detector_settings, tmp_path / "nophotos")  # empty samples: generated images
    card_file = settings.models_dir / DEFAULT_DETECTOR / "1" / "card.json"
    card_file.write_text(card_file.read_text().replace('"COCO 2017 (80 classes)"', '"my own boxes"'))
    [result] = export_model(DEFAULT_DETECTOR, None, ["tflite-fp32"], settings, held_out_images=8)
    assert result.status == exports.STATUS_DIVERGING
    assert "Keras finds no boxes on the held-out images" in result.reason

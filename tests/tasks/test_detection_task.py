"""The detection task on known arrays: thresholds, class filter, per-class NMS, pixels, JSON, verdict, parity."""

from __future__ import annotations

import numpy as np
import pytest

from imgrec.core.errors import ModelError
from imgrec.modeling.yolo_spec import YoloHeadSpec
from imgrec.registry.detector_cards import detector_card
from imgrec.tasks.base import BoxTarget, DecodeOptions
from imgrec.tasks.detection import DetectionTask, box_iou

TASK = DetectionTask()
SPEC = YoloHeadSpec(input_size=(100, 200), anchors=((10, 10),), masks=((0,),), num_classes=3)
CARD = detector_card(SPEC, ["cat", "dog", "tvmonitor"], "toy", source="test", licence="test").with_updates(version="1")


def rows(*boxes):
    """Decoded output rows: each (x1, y1, x2, y2, score cat, score dog, score tv) as fractions."""
    return np.array([boxes], np.float32)


def test_card_uses_coco_spelling_and_states_defaults():
    assert CARD.class_names == ("cat", "dog", "tv")
    assert CARD.decoding["score_threshold"] == 0.3 and CARD.decoding["iou_threshold"] == 0.45
    assert CARD.decoding["max_detections"] == 100
    assert YoloHeadSpec.from_dict(CARD.decoding["yolo"]) == SPEC


def test_threshold_nms_per_class_and_original_pixels():
    outputs = rows(
        (0.10, 0.10, 0.50, 0.50, 0.90, 0.00, 0.0),   # cat, kept
        (0.12, 0.11, 0.51, 0.52, 0.80, 0.00, 0.0),   # the same cat again: suppressed by NMS
        (0.12, 0.11, 0.51, 0.52, 0.00, 0.70, 0.0),   # a dog in the same place: another class, kept
        (0.60, 0.60, 0.90, 0.90, 0.20, 0.00, 0.0),   # under the 0.3 threshold
        (-0.1, 0.50, 1.20, 1.00, 0.00, 0.00, 0.4),   # a tv sticking out of the image: clipped
    )
    [result] = TASK.decode(outputs, CARD, DecodeOptions(), 3.0, image_sizes=[(400, 1000)])
    assert (result.width, result.height, result.latency_ms) == (1000, 400, 3.0)
    assert [(d.label, d.output_index) for d in result.detections] == [("cat", 0), ("dog", 2), ("tv", 4)]
    assert result.detections[0].box == pytest.approx((100, 40, 500, 200))
    assert result.detections[2].box == pytest.approx((0, 200, 1000, 400))
    assert TASK.to_json(result) == {
        "detections": [{"label": "cat", "score": 0.9, "box": [100.0, 40.0, 500.0, 200.0]},
                       {"label": "dog", "score": 0.7, "box": [120.0, 44.0, 510.0, 208.0]},
                       {"label": "tv", "score": 0.4, "box": [0.0, 200.0, 1000.0, 400.0]}],
        "image": {"width": 1000, "height": 400}}
    assert TASK.log_labels(result)[0] == ("cat", pytest.approx(0.9))


def test_options_change_threshold_iou_max_and_classes():
    outputs = rows((0.10, 0.10, 0.50, 0.50, 0.90, 0.0, 0.0), (0.12, 0.11, 0.51, 0.52, 0.80, 0.0, 0.0),
                   (0.60, 0.60, 0.90, 0.90, 0.20, 0.5, 0.0))
    loose = DecodeOptions(score_threshold=0.1, iou_threshold=0.95)
    [result] = TASK.decode(outputs, CARD, loose, 0)
    assert [d.output_index for d in result.detections] == [0, 1, 2, 2]  # row 2 gives a dog and a cat
    [result] = TASK.decode(outputs, CARD, DecodeOptions(score_threshold=0.1, iou_threshold=0.95, max_detections=2), 0)
    assert len(result.detections) == 2
    [result] = TASK.decode(outputs, CARD, DecodeOptions(classes=("dog",)), 0)
    assert [(d.label, d.class_index) for d in result.detections] == [("dog", 1)]
    assert (result.width, result.height) == (200, 100)  # no sizes given: the card's input size


@pytest.mark.parametrize("options, words", [
    (DecodeOptions(score_threshold=0), "score_threshold=0. Expected a number in (0, 1]"),
    (DecodeOptions(iou_threshold=1.5), "iou_threshold=1.5"),
    (DecodeOptions(max_detections=0), "max_detections=0. Expected an integer from 1 to 1000"),
    (DecodeOptions(classes=("tvmonitor", "cat")), "classes: 'tvmonitor' is not among the 3 classes of toy@1"),
])
def test_bad_options_are_named(options, words):
    assert words in TASK.check_options(options, CARD)
    with pytest.raises(ModelError, match="Expected"):
        TASK.decode(rows((0, 0, 1, 1, 0.9, 0, 0)), CARD, options, 0)


def test_nothing_detected_verdict_and_target():
    [result] = TASK.decode(rows((0, 0, 1, 1, 0.1, 0.1, 0.1)), CARD, DecodeOptions(), 0)
    assert result.detections == []
    verdict = TASK.verdict(result, 0.5)
    assert verdict.kind == "none" and "No objects found with a score of at least 30%" in verdict.text
    with pytest.raises(ModelError, match="Nothing was detected"):
        TASK.explanation_target(result, CARD)


def test_verdicts_and_box_targets():
    outputs = rows((0.1, 0.1, 0.5, 0.5, 0.45, 0, 0), (0.6, 0.6, 0.9, 0.9, 0, 0.35, 0))
    [result] = TASK.decode(outputs, CARD, DecodeOptions(), 0)
    assert TASK.verdict(result, 0.5).kind == "uncertain"
    assert TASK.verdict(result, 0.4).kind == "confident"
    assert TASK.explanation_target(result, CARD) == BoxTarget(0, 0, "cat")
    assert TASK.explanation_target(result, CARD, "1") == BoxTarget(1, 1, "dog")
    assert TASK.explanation_target(result, CARD, "dog") == BoxTarget(1, 1, "dog")
    with pytest.raises(ModelError, match="No 'tv' was detected. Expected one of: cat, dog"):
        TASK.explanation_target(result, CARD, "tv")


def test_outputs_checked_against_card():
    assert TASK.check_outputs((None, 10, 7), CARD) is None
    assert "Expected 7 (4 box + classes)" in TASK.check_outputs((None, 10, 8), CARD)
    assert "Expected (batch, boxes, 4 + classes)" in TASK.check_outputs((None, 7), CARD)


def test_training_and_classifier_evaluation_refused_clearly():
    with pytest.raises(ModelError, match="Detection training is not supported"):
        TASK.loss(None)
    with pytest.raises(ModelError, match="imgrec evaluate MODEL --dataset PATH"):
        TASK.evaluate(None, np.zeros((1, 1, 7)), CARD.class_names, "test")


def test_box_iou_known_values():
    iou = box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    assert iou.shape == (1, 3) and iou[0] == pytest.approx([1 / 7, 1.0, 0.0])


def test_parity_matches_boxes_and_refuses_a_diverging_export():
    reference = np.concatenate([rows((0.1, 0.1, 0.5, 0.5, 0.9, 0, 0), (0.6, 0.6, 0.9, 0.9, 0, 0.8, 0))] * 2)
    close = reference + np.float32(0.01)
    judgement = TASK.parity(reference, close, CARD)
    assert judgement.ok, judgement.reason
    assert judgement.figures["matched_share"] == 1.0 and judgement.figures["label_agreement"] == 1.0
    assert judgement.figures["max_score_diff"] == pytest.approx(0.01, abs=1e-5)
    swapped = reference.copy()
    swapped[:, 1, 4:] = [0.8, 0, 0]  # the dog became a cat
    judgement = TASK.parity(reference, swapped, CARD)
    assert not judgement.ok and "labels agree on 50.0%" in judgement.reason
    lost = reference.copy()
    lost[:, 1, 4:] = 0  # the dog vanished
    judgement = TASK.parity(reference, lost, CARD)
    assert not judgement.ok and judgement.figures["matched_share"] == 0.5
    assert not TASK.parity(reference, np.full_like(reference, np.nan), CARD).ok

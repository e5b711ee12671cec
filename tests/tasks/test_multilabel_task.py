"""The multi-label task on known arrays: decode → JSON → log, verdict, target, losses, thresholds, metrics
(against scikit-learn called here), parity per label, and the card's thresholds checked."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from imgrec.core.errors import ModelError
from imgrec.registry.card import ModelCard
from imgrec.tasks import multilabel, multilabel_metrics
from imgrec.tasks.base import ClassTarget, DecodeOptions
from imgrec.tasks.classification_metrics import EvaluationError
from imgrec.tasks.registry import task_for
from imgrec.training.config import RunConfig

TASK = multilabel.MultiLabelTask()
NAMES = ("person", "bicycle", "car")
CARD = ModelCard(name="toy", version="1", backbone="small_cnn", input_size=(8, 8), preprocessing="unit",
                 class_names=NAMES, dataset="generated", task=TASK.name,
                 decoding={"thresholds": [0.5, 0.3, 0.8]})


def test_the_card_names_the_task_and_its_default_loss_is_asymmetric():
    assert isinstance(task_for(CARD), multilabel.MultiLabelTask)
    assert RunConfig(task=TASK.name, dataset="cifar10-mosaic").loss == "asymmetric"
    assert RunConfig().loss == "crossentropy"


def test_decode_marks_each_label_against_its_own_threshold():
    outputs = np.array([[0.6, 0.35, 0.79], [0.1, 0.2, 0.3]], np.float32)
    street, empty = TASK.decode(outputs, CARD, DecodeOptions(), latency_ms=3.0)
    assert [(item.label, item.present) for item in street.labels] == [
        ("person", True), ("bicycle", True), ("car", False)]  # car 0.79 < its 0.8; present ones first
    assert TASK.to_json(street) == {"labels": [
        {"label": "person", "score": pytest.approx(0.6), "threshold": 0.5, "present": True},
        {"label": "bicycle", "score": pytest.approx(0.35), "threshold": 0.3, "present": True},
        {"label": "car", "score": pytest.approx(0.79), "threshold": 0.8, "present": False}]}
    assert TASK.summary(street) == "person 60.0%, bicycle 35.0%"
    assert [label for label, _ in TASK.log_labels(street)] == ["person", "bicycle", "car"]
    assert TASK.verdict(street, 0.99).kind == "confident"  # the settings' single-label threshold does not apply
    verdict = TASK.verdict(empty, 0.5)
    assert verdict.kind == "none" and verdict.text.startswith("No label found")
    assert TASK.summary(empty) == "no label found" and empty.latency_ms == 3.0


def test_explanation_target_is_the_chosen_label_else_the_best_score():
    [result] = TASK.decode(np.array([[0.2, 0.1, 0.7]], np.float32), CARD, DecodeOptions(), 0)
    assert TASK.explanation_target(result, CARD) == ClassTarget(2, "car")
    assert TASK.explanation_target(result, CARD, "bicycle") == ClassTarget(1, "bicycle")
    with pytest.raises(ModelError, match="Unknown label 'dog'"):
        TASK.explanation_target(result, CARD, "dog")


def test_a_card_without_one_threshold_per_class_is_refused():
    assert TASK.check_outputs((None, 3), CARD) is None
    assert "3 class names" in TASK.check_outputs((None, 4), CARD)
    for bad in ({}, {"thresholds": [0.5, 0.5]}, {"thresholds": [0.5, 2.0, 0.1]}, {"thresholds": "high"}):
        problem = TASK.check_outputs((None, 3), CARD.with_updates(decoding=bad))
        assert problem and "Expected 'decoding' with 'thresholds'" in problem


def test_losses_match_their_formulas():
    pytest.importorskip("keras")
    import keras

    y = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
    p = np.array([[0.9, 0.2, 0.4], [0.3, 0.05, 0.6]], np.float32)
    config = RunConfig(task=TASK.name, dataset="cifar10-mosaic", loss="bce")
    bce = float(TASK.loss(config)(y, p))
    assert bce == pytest.approx(float(keras.losses.BinaryCrossentropy()(y, p)), rel=1e-4)
    gamma = 2.0
    focal = float(TASK.loss(RunConfig(task=TASK.name, dataset="cifar10-mosaic", loss="focal", focal_gamma=gamma))(y, p))
    expected = -np.mean(y * (1 - p) ** gamma * np.log(p) + (1 - y) * p ** gamma * np.log(1 - p))
    assert focal == pytest.approx(expected, rel=1e-4)
    asl = float(TASK.loss(RunConfig(task=TASK.name, dataset="cifar10-mosaic"))(y, p))
    shifted = np.maximum(p - 0.05, 0)
    expected = -np.mean(y * np.log(p) + (1 - y) * shifted ** 4 * np.log(1 - shifted))
    assert asl == pytest.approx(expected, rel=1e-4)
    # Class weights from label frequencies: negatives/positives per class scale the positive term.
    weighted = TASK.loss(RunConfig(task=TASK.name, dataset="cifar10-mosaic", loss="bce", class_weights=True),
                         train_labels=np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 0, 1]]))
    assert weighted.positive_weights == [3.0, 3.0, 1.0]  # 3 negatives per positive; car's 0/4 clipped to 1


def test_thresholds_maximise_each_class_f1_on_the_validation_split(rng):
    y = (rng.random((200, 3)) < [0.2, 0.5, 0.7]).astype(int)
    scores = np.clip(y * 0.35 + rng.random((200, 3)) * 0.65, 0, 1)
    thresholds = multilabel_metrics.tune_thresholds(y, scores)
    for c in range(3):
        candidates = np.unique(scores[:, c])
        best = max(skm.f1_score(y[:, c], scores[:, c] >= t) for t in candidates)
        assert skm.f1_score(y[:, c], scores[:, c] >= thresholds[c]) == pytest.approx(best)
    no_positives = multilabel_metrics.tune_thresholds(np.zeros((5, 3)), scores[:5])
    assert list(no_positives) == [multilabel_metrics.DEFAULT_THRESHOLD] * 3


def test_report_agrees_with_scikit_learn_called_directly(rng):
    val_y = (rng.random((150, 3)) < 0.4).astype(int)
    val_scores = np.clip(val_y * 0.4 + rng.random((150, 3)) * 0.6, 0, 1)
    y = (rng.random((120, 3)) < 0.4).astype(int)
    scores = np.clip(y * 0.4 + rng.random((120, 3)) * 0.6, 0, 1)
    report = TASK.evaluate(y, scores, NAMES, "test", calibration=(val_y, val_scores))
    thresholds = multilabel_metrics.tune_thresholds(val_y, val_scores)
    assert report.thresholds == pytest.approx(list(thresholds)) and report.thresholds_from == "val"
    predicted = scores >= thresholds
    assert report.mean_average_precision == pytest.approx(skm.average_precision_score(y, scores, average="macro"))
    assert report.micro_f1 == pytest.approx(skm.f1_score(y, predicted, average="micro"))
    assert report.macro_f1 == pytest.approx(skm.f1_score(y, predicted, average="macro"))
    assert report.subset_accuracy == pytest.approx(skm.accuracy_score(y, predicted))
    assert report.hamming_loss == pytest.approx(skm.hamming_loss(y, predicted))
    for c, row in enumerate(report.per_class):
        assert row["precision"] == pytest.approx(skm.precision_score(y[:, c], predicted[:, c]))
        assert row["recall"] == pytest.approx(skm.recall_score(y[:, c], predicted[:, c]))
        assert row["average_precision"] == pytest.approx(skm.average_precision_score(y[:, c], scores[:, c]))
        assert row["support"] == int(y[:, c].sum())
    assert report.cooccurrence[0][1] == int(np.sum(y[:, 0] & y[:, 1]))
    assert report.cooccurrence[2][2] == int(y[:, 2].sum())
    curve = report.pr_curves["car"]
    assert len(curve["recall"]) == multilabel_metrics.PR_CURVE_POINTS and max(curve["precision"]) <= 1
    again = TASK.report_from_dict(report.to_dict())
    assert again == report and again.summary()["mAP"] == round(report.mean_average_precision, 5)


def test_a_class_absent_from_the_split_is_left_out_of_the_mean_ap():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]])
    scores = np.array([[0.9, 0.1, 0.2], [0.2, 0.8, 0.1], [0.6, 0.7, 0.3]])
    report = TASK.evaluate(y, scores, NAMES, "test", thresholds=[0.5, 0.5, 0.5])
    assert report.mean_average_precision == pytest.approx(1.0) and report.per_class[2]["support"] == 0
    with pytest.raises(EvaluationError, match=r"Expected both \(images, classes\)"):
        TASK.evaluate(np.array([0, 1]), scores[:2], NAMES, "test")


def test_parity_judges_decisions_at_the_card_thresholds_per_label():
    reference = np.array([[0.6, 0.1, 0.9], [0.2, 0.31, 0.1]] * 50)
    same = TASK.parity(reference, reference + 0.001, CARD)
    assert same.ok and same.figures["decision_agreement"] == 1.0 and same.figures["set_agreement"] == 1.0
    assert same.figures["max_prob_diff"] == pytest.approx(0.001)
    assert set(same.figures["per_label"]) == set(NAMES)
    flipped = reference.copy()
    flipped[::2, 1] = 0.35  # bicycle crosses its 0.3 threshold on half the images
    judged = TASK.parity(reference, flipped, CARD)
    assert not judged.ok and judged.figures["worst_label"] == "bicycle"
    assert judged.figures["per_label"]["bicycle"]["decision_agreement"] == 0.5
    assert "label decisions agree" in judged.reason and "whole label sets" in judged.reason
    assert not TASK.parity(reference, reference[:, :2], CARD).ok
    assert TASK.parity(reference, np.full_like(reference, np.nan), CARD).reason.startswith("outputs are not finite")
    assert "decisions" in TASK.parity_headline(same.figures)

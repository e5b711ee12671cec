"""Evaluation metrics on known arrays, temperature scaling, and the report's error cells."""

from __future__ import annotations

import numpy as np
import pytest

from imgrec.tasks import classification_metrics
from imgrec.tasks.classification_metrics import EvaluationError


def one_hot_probs(predicted, num_classes, confidence=0.9):
    probs = np.full((len(predicted), num_classes), (1 - confidence) / (num_classes - 1))
    probs[np.arange(len(predicted)), predicted] = confidence
    return probs


def test_report_metrics_match_hand_computed_values():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    report = classification_metrics.build_report(y_true, one_hot_probs(y_pred, 3), ["a", "b", "c"])
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.confusion == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    per_class = {row["class"]: row for row in report.per_class}
    assert per_class["a"]["precision"] == pytest.approx(2 / 3) and per_class["a"]["recall"] == pytest.approx(2 / 3)
    assert per_class["b"]["f1"] == pytest.approx(0.8) and per_class["c"]["f1"] == 0
    assert report.macro_f1 == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert report.weighted_f1 == pytest.approx((3 * 2 / 3 + 2 * 0.8) / 6)
    assert report.misclassified("a", "b") == [2] and report.misclassified("c", "a") == [5]
    assert report.top3_accuracy == 1.0


def test_top_k_accuracy():
    probs = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4]])
    assert classification_metrics.top_k_accuracy([2, 0], probs, 1) == 0
    assert classification_metrics.top_k_accuracy([2, 0], probs, 3) == 0.5


def test_ece_is_zero_when_confidence_equals_accuracy():
    y_true = np.array([0] * 8 + [1] * 2)
    probs = np.tile([0.8, 0.2], (10, 1))  # always "0" at 80 %: right 8 times out of 10
    result = classification_metrics.calibration(y_true, probs)
    assert result["ece"] == pytest.approx(0.0, abs=1e-9)
    assert sum(b["count"] for b in result["bins"]) == 10


def test_temperature_softens_an_overconfident_model():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 400)
    correct = rng.random(400) < 0.7
    predicted = np.where(correct, y_true, (y_true + 1) % 4)
    probs = one_hot_probs(predicted, 4, confidence=0.995)
    temperature = classification_metrics.fit_temperature(y_true, probs)
    assert temperature > 1.5
    scaled = classification_metrics.apply_temperature(probs, temperature)
    assert classification_metrics.negative_log_likelihood(y_true, scaled) < classification_metrics.negative_log_likelihood(y_true, probs)
    report = classification_metrics.build_report(y_true, probs, list("abcd"), temperature=temperature)
    assert report.summary()["ece_calibrated"] < report.summary()["ece"]
    np.testing.assert_allclose(scaled.sum(axis=1), 1.0)


def test_report_round_trips_and_refuses_wrong_shapes(tmp_path):
    report = classification_metrics.build_report([0, 1], one_hot_probs(np.array([0, 1]), 2), ["x", "y"])
    report.save(tmp_path / "r.json", extra={"run_id": "r1"})
    again = classification_metrics.EvaluationReport.load(tmp_path / "r.json")
    assert again.summary() == report.summary()
    with pytest.raises(EvaluationError, match="Expected"):
        classification_metrics.build_report([0, 1], np.ones((2, 3)) / 3, ["x", "y"])


def test_ood_threshold_is_fitted_on_the_calibration_split_and_kept_in_the_summary():
    from imgrec.tasks.classification import ClassificationTask

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    sure = one_hot_probs(labels, 4, confidence=0.97)
    spread = classification_metrics.normalized_entropy(sure)
    report = ClassificationTask().evaluate(labels, sure, list("abcd"), "test", calibration=(labels, sure))
    assert report.ood_threshold == pytest.approx(
        classification_metrics.fit_ood_threshold(sure, report.temperature))
    assert report.summary()["ood_threshold"] == pytest.approx(report.ood_threshold, abs=1e-5)
    assert 0 < report.ood_threshold < 1 and spread.max() < 1
    uniform = np.full((1, 4), 0.25)
    assert classification_metrics.normalized_entropy(uniform)[0] == pytest.approx(1.0)
    assert classification_metrics.fit_ood_threshold(np.zeros((0, 4))) is None

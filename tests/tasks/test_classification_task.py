"""The classification task on known arrays: decoding, JSON, log labels, verdict, target, parity, outputs check."""

from __future__ import annotations

import numpy as np
import pytest

from imgrec.core.errors import ModelError
from imgrec.registry.card import ModelCard
from imgrec.tasks import classification
from imgrec.tasks.base import DecodeOptions
from imgrec.tasks.registry import TASKS, task_for, task_named

TASK = classification.ClassificationTask()
CARD = ModelCard(name="toy", version="1", backbone="small_cnn", input_size=(8, 8), preprocessing="unit",
                 class_names=("cat", "dog", "bird", "fish", "frog", "horse", "ship"), dataset="generated")


def test_every_registered_task_is_found_by_its_card_name():
    assert task_for(CARD) is TASKS["image-classification"]
    with pytest.raises(ModelError, match="Unknown task 'captioning'. Expected one of: image-classification"):
        task_named("captioning")


def test_decode_ranks_top_k_and_keeps_every_probability():
    outputs = np.array([[0.1, 0.6, 0.05, 0.05, 0.1, 0.05, 0.05], [0.3, 0.3, 0.1, 0.1, 0.1, 0.05, 0.05]], np.float32)
    first, tie = TASK.decode(outputs, CARD, DecodeOptions(top_k=3), latency_ms=2.5)
    assert [p.label for p in first.predictions] == ["dog", "cat", "frog"]  # ties keep the card's order
    assert [p.label for p in tie.predictions] == ["cat", "dog", "bird"]
    np.testing.assert_array_equal(first.probabilities, outputs[0])
    assert first.latency_ms == 2.5 and first.top.label == "dog"
    assert len(TASK.decode(outputs, CARD, DecodeOptions(top_k=99), 0)[0].predictions) == 7
    assert len(TASK.decode(outputs, CARD, DecodeOptions(top_k=0), 0)[0].predictions) == 1


def test_json_log_labels_and_summary_say_the_same_ranking():
    [result] = TASK.decode(np.array([[0.7, 0.2, 0.1, 0, 0, 0, 0]], np.float32), CARD, DecodeOptions(top_k=2), 1.0)
    assert TASK.to_json(result) == {"predictions": [{"label": "cat", "score": pytest.approx(0.7)},
                                                    {"label": "dog", "score": pytest.approx(0.2)}]}
    assert [label for label, _ in TASK.log_labels(result)] == ["cat", "dog"]
    assert TASK.summary(result) == "cat 70.0%, dog 20.0%"


# A card whose evaluation fitted a loose out-of-distribution threshold: the score and margin rules decide.
TOLERANT = CARD.with_updates(metrics={"ood_threshold": 0.9})


def test_verdict_follows_the_threshold():
    [result] = TASK.decode(np.array([[0.75, 0.2, 0.05, 0, 0, 0, 0]], np.float32), TOLERANT, DecodeOptions(), 1.0)
    assert TASK.verdict(result, 0.8).kind == "uncertain" and "75.0%" in TASK.verdict(result, 0.8).text
    confident = TASK.verdict(result, 0.7)
    assert confident.kind == "confident" and "ahead of dog" in confident.text
    assert confident.figures["margin"] == pytest.approx(0.55)


def test_verdict_uses_the_cards_temperature():
    outputs = np.array([[0.7, 0.2, 0.1, 0, 0, 0, 0]], np.float32)
    sharpening = CARD.with_updates(metrics={"temperature": 0.5, "ood_threshold": 0.9})  # T < 1: underconfident
    [raw] = TASK.decode(outputs, TOLERANT, DecodeOptions(), 1.0)
    [calibrated] = TASK.decode(outputs, sharpening, DecodeOptions(), 1.0)
    assert TASK.verdict(raw, 0.8).kind == "uncertain"
    verdict = TASK.verdict(calibrated, 0.8)
    # 0.7² / (0.7² + 0.2² + 0.1²) = 0.907
    assert verdict.kind == "confident" and verdict.figures["calibrated"] == pytest.approx(0.49 / 0.54, abs=1e-4)


def test_the_charts_calibrated_scores_are_the_verdicts():
    sharpening = CARD.with_updates(metrics={"temperature": 0.5, "ood_threshold": 0.9})
    [result] = TASK.decode(np.array([[0.7, 0.2, 0.1, 0, 0, 0, 0]], np.float32), sharpening, DecodeOptions(top_k=2), 1.0)
    scores = result.calibrated_scores(result.predictions)
    assert scores == pytest.approx([0.49 / 0.54, 0.04 / 0.54], abs=1e-4)
    assert scores[0] == pytest.approx(TASK.verdict(result, 0.8).figures["calibrated"])


def test_a_close_call_is_not_confident():
    [result] = TASK.decode(np.array([[0.55, 0.45, 0, 0, 0, 0, 0]], np.float32), TOLERANT, DecodeOptions(), 1.0)
    verdict = TASK.verdict(result, 0.5)
    assert verdict.kind == "uncertain" and verdict.text.startswith("Close call: cat 55.0% vs dog 45.0%")


def test_spread_scores_warn_outside_the_models_classes():
    spread = np.array([[0.4, 0.15, 0.15, 0.1, 0.1, 0.05, 0.05]], np.float32)
    [result] = TASK.decode(spread, CARD, DecodeOptions(), 1.0)
    verdict = TASK.verdict(result, 0.3)  # above the score threshold, but spread
    assert verdict.kind == "uncertain" and verdict.out_of_distribution
    assert verdict.text.startswith("Outside this model's classes? cat 40.0%")
    # A card whose evaluation fitted a looser threshold accepts the same scores.
    [tolerant] = TASK.decode(spread, TOLERANT, DecodeOptions(), 1.0)
    assert not TASK.verdict(tolerant, 0.3).out_of_distribution


def test_explanation_target_is_the_chosen_class_else_the_top_one():
    [result] = TASK.decode(np.array([[0.1, 0.2, 0.7, 0, 0, 0, 0]], np.float32), CARD, DecodeOptions(), 1.0)
    assert (TASK.explanation_target(result, CARD).index, TASK.explanation_target(result, CARD).label) == (2, "bird")
    assert TASK.explanation_target(result, CARD, "dog").index == 1
    with pytest.raises(ModelError, match="Unknown class 'whale'"):
        TASK.explanation_target(result, CARD, "whale")


def test_output_shape_checks_name_what_was_received():
    assert TASK.check_outputs((None, 7), CARD) is None
    assert "has 3 outputs, but its card lists 7 class names" in TASK.check_outputs((None, 3), CARD)
    assert "Expected (batch, classes)" in TASK.check_outputs((None, 4, 7), CARD)


def test_parity_figures_and_judgement_on_known_outputs():
    reference = np.random.default_rng(0).dirichlet(np.ones(7), size=100)
    same = TASK.parity(reference, reference.copy(), CARD)
    assert same.ok and same.figures["top1_agreement"] == 1.0 and same.figures["max_prob_diff"] == 0.0
    flipped = reference.copy()
    flipped[:10] = flipped[:10, ::-1]  # 10 % of the images change their top-1
    agreement = np.mean(reference.argmax(1) == flipped.argmax(1))
    assert agreement < 0.97
    judged = TASK.parity(reference, flipped, CARD)
    assert judged.figures["top1_agreement"] == pytest.approx(agreement, abs=1e-4)
    assert not judged.ok and "top-1 agrees with Keras" in judged.reason
    broken = TASK.parity(reference, np.full_like(reference, np.nan), CARD)
    assert not broken.ok and "not finite" in broken.reason
    assert not TASK.parity(reference, reference[:, :3], CARD).ok
    assert "top-1" in TASK.parity_headline(same.figures) and TASK.parity_thresholds()["min_top1_agreement"] == 0.97

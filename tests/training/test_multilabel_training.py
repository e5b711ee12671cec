"""Training a tiny multi-label model on a few mosaics and on a tiny CSV dataset: thresholds tuned on val into the
card, the report against scikit-learn, the Predictor's label sets, Grad-CAM per label, and an export's parity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from imgrec.datasets import multilabel
from imgrec.registry import catalog
from imgrec.registry.card import TRAINING_REPORT
from imgrec.tasks import multilabel_metrics
from imgrec.training import evaluation
from tests.helpers.export import requires_export_runtimes
from tests.helpers.multilabel_data import COLOURS, train_tiny_multilabel, write_colour_cifar, write_colour_csv
from tests.helpers.settings import make_settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("multilabel-train")
    settings = make_settings(root, shared_data_dir=write_colour_cifar(root / "shared"))
    mosaic_run = train_tiny_multilabel(settings, multilabel.MOSAIC, limit_per_class=10)
    csv_path = write_colour_csv(root / "csv", images=60)
    csv_run = train_tiny_multilabel(settings, str(csv_path), name="tiny-csv", dataset_format="csv", image_size=24,
                                    loss="bce", class_weights=True, epochs=6)
    return settings, mosaic_run, csv_run, csv_path


@pytest.mark.parametrize("which", ["mosaic", "csv"])
def test_thresholds_in_the_card_are_the_validation_split_f1_optimum(trained, which):
    settings, mosaic_run, csv_run, csv_path = trained
    run = mosaic_run if which == "mosaic" else csv_run
    status = run.status()
    assert status["state"] == "completed", status.get("error")
    name, version = status["model_ref"].split("@")
    model, card = catalog.load_model(name, version, settings)
    assert card.task == "multi-label-classification" and card.class_names == tuple(sorted(COLOURS))
    config = json.loads((catalog.model_dir(name, version, settings) / TRAINING_REPORT).read_text())["config"]
    dataset = multilabel.load_multilabel_dataset(config["dataset"], settings, config["dataset_format"],
                                                 val_fraction=config["val_fraction"],
                                                 test_fraction=config["test_fraction"], seed=config["seed"],
                                                 limit_per_class=config["limit_per_class"], min_per_class=1)
    val, test = dataset.splits["val"], dataset.splits["test"]
    val_scores = evaluation.predict_split(model, val, card.input_size, card.num_classes)
    thresholds = np.asarray(card.decoding["thresholds"])
    np.testing.assert_allclose(thresholds, multilabel_metrics.tune_thresholds(val.labels, val_scores), atol=1e-5)
    for c in range(card.num_classes):  # no other cut gives that class a better validation F1
        best = max(skm.f1_score(val.labels[:, c], val_scores[:, c] >= t, zero_division=0)
                   for t in np.unique(val_scores[:, c]))
        assert skm.f1_score(val.labels[:, c], val_scores[:, c] >= thresholds[c]) == pytest.approx(best, abs=1e-6)
    scores = evaluation.predict_split(model, test, card.input_size, card.num_classes)
    predicted = scores >= thresholds
    present = test.labels.sum(0) > 0
    assert card.metrics["mAP"] == pytest.approx(
        skm.average_precision_score(test.labels[:, present], scores[:, present], average="macro"), abs=1e-4)
    assert card.metrics["micro_f1"] == pytest.approx(skm.f1_score(test.labels, predicted, average="micro"), abs=1e-4)
    assert card.metrics["hamming_loss"] == pytest.approx(skm.hamming_loss(test.labels, predicted), abs=1e-4)
    if which == "mosaic":  # flat colours in 2x2 cells: learnable in a few seconds
        assert card.metrics["mAP"] > 0.8, card.metrics


def test_the_predictor_gives_label_sets_and_grad_cam_explains_one_label(trained, tmp_path):
    from imgrec.explain.cam import gradcam
    from imgrec.inference.predictor import Predictor
    from imgrec.tasks.registry import task_for

    settings = trained[0]
    predictor = Predictor.load("tiny-multilabel", None, settings)
    mosaic = np.zeros((64, 64, 3), np.uint8)
    mosaic[:, :] = COLOURS["red"]
    mosaic[32:, 32:] = COLOURS["blue"]
    [result] = predictor.predict([mosaic])
    task = task_for(predictor.card)
    assert {item.label for item in result.labels} == set(COLOURS)
    assert all(item.present == (item.score >= item.threshold) for item in result.labels)
    target = task.explanation_target(result, predictor.card, "blue")
    heatmap = gradcam(predictor, mosaic, target_class=target.index)
    blue = next(item for item in result.labels if item.label == "blue")
    assert heatmap.label == "blue" and heatmap.probability == pytest.approx(blue.score, abs=1e-4)


@requires_export_runtimes
def test_an_export_is_judged_per_label_at_the_card_thresholds(trained):
    from imgrec.export import exporter

    settings = trained[0]
    [result] = exporter.export_model("tiny-multilabel", None, ["onnx"], settings)
    assert result.status == "ok", result.reason
    assert result.figures["decision_agreement"] == 1.0 and result.figures["set_agreement"] == 1.0
    assert set(result.figures["per_label"]) == set(COLOURS) and result.figures["max_prob_diff"] < 1e-4
    parity = exporter.read_parity("tiny-multilabel", "1", settings)
    assert parity["thresholds"]["min_decision_agreement"] == 0.99
    assert parity["held_out"]["source"] == "dataset"  # mosaics of its own test split, not generated images

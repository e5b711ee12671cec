"""``imgrec predict`` with a trained tiny multi-label model: the API's label-set JSON, the one-line summary,
and the label set in the log."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.helpers.cli import run_cli
from tests.helpers.multilabel_data import quadrant_image, train_tiny_multilabel, write_colour_csv
from tests.helpers.settings import make_settings


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("multilabel-cli")
    settings = make_settings(root)
    run = train_tiny_multilabel(settings, str(write_colour_csv(root / "csv", images=60)), dataset_format="csv",
                                epochs=6, image_size=24)
    assert run.status()["state"] == "completed", run.status().get("error")
    image = root / "two.png"
    Image.fromarray(quadrant_image("green", "yellow")).save(image)
    return settings, image, root / "csv" / "labels.csv"


def test_predict_json_and_text_give_the_same_label_set_and_log_it(trained):
    from imgrec.predlog.store import open_store

    settings, image, _ = trained
    result = run_cli(["predict", str(image), "--model", "tiny-multilabel", "--json"], settings)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    present = [item["label"] for item in body["labels"] if item["present"]]
    assert all(item["present"] == (item["score"] >= item["threshold"]) for item in body["labels"])
    text = run_cli(["predict", str(image), "--model", "tiny-multilabel", "--no-log"], settings)
    assert text.returncode == 0, text.stderr
    assert (", ".join(present) == "" and "no label found" in text.stdout) or all(p in text.stdout for p in present)
    with open_store(settings) as store:
        assert store.count_predictions() == 1
        assert [item["label"] for item in store.get_prediction(body["prediction_id"])["label_set"]] == present


def test_training_a_multi_label_model_on_class_folders_is_refused_clearly(trained, tmp_path):
    settings, _, _ = trained
    config = tmp_path / "run.yaml"
    config.write_text("task: multi-label-classification\ndataset: cifar10\n")
    result = run_cli(["train", "--config", str(config)], settings)
    assert result.returncode != 0
    assert "task 'multi-label-classification' trains on label sets" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_evaluate_scores_the_test_split_at_the_card_thresholds(trained):
    from imgrec.registry import catalog

    settings, _, labels = trained
    result = run_cli(["evaluate", "tiny-multilabel", "--dataset", str(labels), "--json"], settings)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    _, card = catalog.load_model("tiny-multilabel", None, settings)
    assert report["thresholds"] == card.decoding["thresholds"] and report["thresholds_from"] == "given"
    assert report["mean_average_precision"] == pytest.approx(card.metrics["mAP"], abs=1e-4)  # the run's own test split
    text = run_cli(["evaluate", "tiny-multilabel", "--dataset", str(labels)], settings)
    assert text.returncode == 0 and "mAP" in text.stdout and "thresh" in text.stdout, text.stderr

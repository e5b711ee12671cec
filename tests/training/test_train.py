"""Training runs end to end on a tiny generated dataset: model, card, report; cancel; SIGKILL + resume; queue."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from imgrec.registry import catalog
from imgrec.training import runs, trainer
from imgrec.training.config import ConfigError, RunConfig
from tests.helpers.datasets import make_image_folder
from tests.helpers.models import CLASSIFICATION
from tests.helpers.settings import make_settings
from tests.helpers.training import tiny_config, wait_until


def test_run_config_from_yaml_and_validation(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: m1\ndataset: cifar10\nimage_size: 64\naugment: {flip: true, cutout: 0.2}\nloss: focal\n")
    config = RunConfig.from_yaml(path)
    assert config.image_size == (64, 64) and config.augment.flip and config.augment.cutout == 0.2
    assert RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="Unknown run config key"):
        RunConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="backbone 'vgg'.*loss 'mse'"):
        RunConfig(backbone="vgg", loss="mse")
    path.write_text("- not a mapping")
    with pytest.raises(ConfigError, match="mapping"):
        RunConfig.from_yaml(path)


def test_class_weights_from_counts():
    weights = trainer.class_weights_from_counts([30, 10, 0, 20])
    assert weights[1] == pytest.approx(2.0) and weights[0] == pytest.approx(2 / 3) and weights[2] == 0.0


def test_fine_tune_keeps_batch_norm_frozen_and_cuts_at_a_block_boundary():
    from imgrec.modeling.build import build_model

    model = build_model("mobilenet_v2", 3, (32, 32), weights=None, head=CLASSIFICATION.head)
    backbone = model.get_layer("backbone")
    assert trainer.set_trainable(backbone, 0) == 0 and not backbone.trainable
    count = trainer.set_trainable(backbone, 20)
    assert 0 < count < 20
    assert not any(layer.trainable for layer in backbone.layers if "BN" in layer.name or "_bn" in layer.name)
    assert trainer.cut_layer(backbone, 38) == "block_13_expand"


@pytest.mark.slow
def test_end_to_end_transfer_run_registers_a_working_model(tmp_path, monkeypatch, capsys):
    """MobileNetV2 head + fine-tune phases on cached activations (flip views) -> card, report, curves."""
    from imgrec.cli import main
    from imgrec.core.settings import get_settings
    from imgrec.inference.predictor import Predictor

    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=10, size=32)
    config = tiny_config(folder, name="tiny-mnv2", backbone="mobilenet_v2", image_size=32, epochs=2,
                         fine_tune_epochs=1, fine_tune_layers=38, augment={"flip": True}, label_smoothing=0.1,
                         class_weights=True)
    run = trainer.train(config, settings)
    status = run.status()
    assert status["state"] == runs.COMPLETED, run.log_tail()
    assert [r["epoch"] for r in run.metrics()] == [1, 2, 3]
    assert [r["phase"] for r in run.metrics()] == ["head", "head", "fine_tune"]
    assert "Computing train features below 'block_13_expand' (identity+flip)" in run.log_path.read_text()
    assert not (run.dir / "features").exists()  # removed once the run completed
    card = catalog.load_card("tiny-mnv2", "1", settings)
    assert card.class_names == ("blue", "green", "red") and card.input_size == (32, 32)
    assert card.preprocessing == "mobilenet_v2"
    for key in ("accuracy", "top3_accuracy", "macro_f1", "ece", "temperature", "train_seconds", "wall_seconds", "val_accuracy"):
        assert key in card.metrics
    folder_out = catalog.model_dir("tiny-mnv2", "1", settings)
    for name in ("report.json", "history.jsonl", "curves.png"):
        assert (folder_out / name).stat().st_size > 0
    report = json.loads((folder_out / "report.json").read_text())
    assert report["run_id"] == run.id and len(report["confusion"]) == 3
    predictor = Predictor.load("tiny-mnv2", "1", settings)  # safe_mode load, no custom objects
    probabilities = predictor.predict_outputs([np.zeros((40, 40, 3), np.uint8)])
    assert probabilities.shape == (1, 3) and np.isclose(probabilities.sum(), 1, atol=1e-4)

    for name, value in {"IMGREC_MODELS_DIR": settings.models_dir, "IMGREC_DATA_DIR": settings.data_dir}.items():
        monkeypatch.setenv(name, str(value))
    get_settings.cache_clear()
    try:
        assert main.main(["evaluate", "tiny-mnv2@1", "--dataset", str(folder), "--split", "test"]) == 0
        printed = capsys.readouterr().out
        assert "confusion matrix (rows: true class" in printed and "reliability (ECE" in printed
    finally:
        get_settings.cache_clear()


@pytest.mark.slow
def test_missing_imagenet_weights_fall_back_to_random_with_a_visible_warning(tmp_path, monkeypatch):
    import keras

    real_mobilenet_v2 = keras.applications.MobileNetV2

    def offline_mobilenet_v2(*args, weights=None, **kwargs):
        if weights == "imagenet":
            raise OSError("URL fetch failure: no network")  # what Keras raises offline
        return real_mobilenet_v2(*args, weights=weights, **kwargs)

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline_mobilenet_v2)
    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=6, size=32)
    run = trainer.train(tiny_config(folder, name="offline", backbone="mobilenet_v2", weights="imagenet",
                                  image_size=32, epochs=1), settings)
    status = run.status()
    assert status["state"] == runs.COMPLETED, run.log_tail()
    assert "No ImageNet weights for mobilenet_v2 (OSError: URL fetch failure" in status["warning"]
    assert "starts from random initialisation" in run.log_path.read_text()
    assert "starts from random initialisation" in catalog.load_card("offline", "1", settings).description


@pytest.mark.slow
def test_report_indices_point_at_the_same_images_when_the_split_is_rebuilt(tmp_path):
    """The gallery and `evaluate` rebuild a run's split from its saved config; a per-class limit included."""
    from imgrec.datasets.loading import dataset_split_args, load_dataset
    from imgrec.inference.predictor import Predictor
    from imgrec.registry.card import TRAINING_REPORT
    from imgrec.registry.catalog import training_config
    from imgrec.tasks.classification_metrics import EvaluationReport

    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=40)  # 6 test images per class, 3 kept
    trainer.train(tiny_config(folder, name="limited", epochs=1, learning_rate=1e-6, limit_per_class=3), settings)
    report = EvaluationReport.load(catalog.model_dir("limited", "1", settings) / TRAINING_REPORT)
    config = training_config("limited", "1", settings)
    assert config["limit_per_class"] == 3
    split = load_dataset(config["dataset"], settings, min_per_class=1, **dataset_split_args(config)).splits[report.split]
    assert len(split) == report.samples and report.errors  # an untrained model gets some wrong
    predictor = Predictor.load("limited", "1", settings)
    for cell, indices in report.errors.items():
        true_class, predicted_class = cell.split("|")
        assert [report.class_names[split.labels[i]] for i in indices] == [true_class] * len(indices)
        top1 = predictor.predict_outputs([split.load_image(i) for i in indices]).argmax(1)
        assert [report.class_names[c] for c in top1] == [predicted_class] * len(indices)


def resume_and_finish(run, settings, after_epoch: int, total_epochs: int) -> None:
    """Resume in a real worker; it must continue after ``after_epoch`` with the optimizer state it had."""
    runs.resume(run.id, settings)
    wait_until(lambda: run.state in runs.FINAL_STATES, 120, "the resumed run to finish", run)
    assert run.state == runs.COMPLETED, run.log_tail()
    log = run.log_path.read_text()
    assert f"Resuming after epoch {after_epoch}" in log
    steps = run.status()["steps_per_epoch"]
    assert f"Restored the optimizer state at step {after_epoch * steps}." in log
    assert [r["epoch"] for r in run.metrics()] == list(range(1, total_epochs + 1))  # contiguous, none twice


def _compiled_tiny_classifier(seed: int, units: int = 3):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(units, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="categorical_crossentropy")
    return model


def test_the_optimizer_state_survives_a_resume_and_refuses_a_mismatch(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 4)), np.eye(3)[rng.integers(0, 3, 32)]
    trained = _compiled_tiny_classifier(seed=0)
    trained.fit(x, y, batch_size=8, epochs=2, verbose=0)  # 8 Adam steps
    path = tmp_path / trainer.OPTIMIZER_CHECKPOINT
    trainer.save_optimizer(trained, path, "head", epoch=2)

    resumed = _compiled_tiny_classifier(seed=1)
    assert trainer.restore_optimizer(resumed, path, "head", epoch=2) == 8
    for saved, restored in zip(trained.optimizer.variables, resumed.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(restored))
    assert np.abs(np.asarray(resumed.optimizer.variables[-1])).sum() > 0  # real moments, not zeros

    # Another phase, another epoch or another architecture: nothing is loaded.
    assert trainer.restore_optimizer(_compiled_tiny_classifier(seed=1), path, "fine_tune", epoch=2) is None
    assert trainer.restore_optimizer(_compiled_tiny_classifier(seed=1), path, "head", epoch=3) is None
    other = _compiled_tiny_classifier(seed=1, units=5)
    assert trainer.restore_optimizer(other, path, "head", epoch=2) is None
    assert int(other.optimizer.iterations) == 0


@pytest.mark.slow
def test_cancel_stops_at_a_safe_point_and_a_resume_finishes_the_run(tmp_path):
    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=12)
    run = runs.create_run(tiny_config(folder, epochs=5, throttle_seconds=0.2), settings)

    def cancel_after_first_epoch():
        wait_until(lambda: len(run.metrics()) >= 1, 60, "a finished epoch", run)
        runs.cancel(run.id, settings)

    watcher = threading.Thread(target=cancel_after_first_epoch)
    watcher.start()
    status = trainer.execute_run(run, settings)
    watcher.join()
    assert status["state"] == runs.CANCELLED
    done = run.training_state()["epoch"]
    assert 1 <= done < 5
    assert (run.checkpoints_dir / "last.weights.h5").exists()
    assert [r["epoch"] for r in run.metrics()] == list(range(1, done + 1))
    assert catalog.versions("tiny", settings) == []
    with pytest.raises(runs.RunError, match="already cancelled"):
        runs.cancel(run.id, settings)

    # A cancel is not a kill: the resumed worker (a real process) continues after the last finished epoch.
    resume_and_finish(run, settings, after_epoch=done, total_epochs=5)
    assert not run.cancel_requested()
    assert run.status()["resumes"] == 1 and catalog.versions("tiny", settings) == ["1"]
    assert catalog.load_card("tiny", "1", settings).metrics["epochs_trained"] == 5


@pytest.mark.slow
def test_early_stopping_ends_the_run_when_val_accuracy_stops_improving(tmp_path):
    """Validation labels contradict the training labels (a derangement of the colours), so whatever
    the model learns cannot raise val accuracy: patience 1 stops long before the configured epochs."""
    from tests.helpers.datasets import COLOURS

    settings = make_settings(tmp_path)
    root = tmp_path / "ds"
    make_image_folder(root / "train", per_class=12)
    source = make_image_folder(tmp_path / "val-source", per_class=4, seed=1)
    (root / "val").mkdir()
    names = list(COLOURS)
    for name, wrong in zip(names, names[1:] + names[:1]):  # red images filed as green, and so on
        (source / name).rename(root / "val" / wrong)
    epochs = 8
    run = trainer.train(tiny_config(root, name="early", epochs=epochs, early_stopping_patience=1), settings)
    assert run.state == runs.COMPLETED, run.log_tail()
    trained = len(run.metrics())
    assert trained < epochs
    state = run.training_state()
    assert state["epoch"] == trained and state["best_epoch"] == trained - 1  # stopped one epoch after the best
    assert f"Early stopping after epoch {trained}: no better val_accuracy for 1 epochs." in run.log_path.read_text()
    card = catalog.load_card("early", "1", settings)
    assert card.metrics["epochs_trained"] == trained and card.metrics["best_epoch"] == trained - 1


@pytest.mark.slow
def test_sigkill_then_resume_continues_from_the_saved_epoch(tmp_path):
    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=12)
    run = runs.submit(tiny_config(folder, epochs=6, throttle_seconds=0.3), settings)
    wait_until(lambda: len(run.metrics()) >= 2, 120, "two finished epochs", run)
    os.kill(run.raw_status()["pid"], signal.SIGKILL)
    wait_until(lambda: run.state == runs.INTERRUPTED, 20, "the dead worker to be noticed", run)
    saved = run.training_state()["epoch"]
    assert 2 <= saved < 6
    resume_and_finish(run, settings, after_epoch=saved, total_epochs=6)
    assert run.status()["resumes"] == 1 and catalog.versions("tiny", settings) == ["1"]


@pytest.mark.slow
def test_runs_queue_one_at_a_time_and_a_queued_run_cancels(tmp_path):
    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=12)
    first = runs.submit(tiny_config(folder, name="first", epochs=3, throttle_seconds=0.3), settings)
    wait_until(lambda: first.state == runs.RUNNING, 90, "the first run to start", first)
    second = runs.submit(tiny_config(folder, name="second", epochs=1, loss="focal", tensorboard=True), settings)
    third = runs.submit(tiny_config(folder, name="third", epochs=1), settings)
    runs.cancel(third.id, settings)
    time.sleep(2)
    assert second.state == runs.QUEUED and first.state == runs.RUNNING
    wait_until(lambda: all(r.state in runs.FINAL_STATES for r in (first, second, third)), 150, "all runs", second)
    assert [r.state for r in (first, second, third)] == [runs.COMPLETED, runs.COMPLETED, runs.CANCELLED]
    assert second.status()["started"] >= first.status()["finished"]
    assert "started" not in third.status() and not third.metrics()
    assert catalog.model_names(settings) == ["first", "second"]
    model, card = catalog.load_model("second", None, settings)  # focal loss: still loads in safe mode
    assert card.num_classes == 3
    assert (list((second.dir / "tensorboard").rglob("events.out.tfevents*"))
            or "tensorboard package is not installed" in second.log_path.read_text())

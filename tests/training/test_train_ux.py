"""What the Train page relies on: a cancelled run's best epoch saved as a model, and an ETA that does not
swing when a run resumes."""

from __future__ import annotations

import threading

import pytest

from imgrec.registry import catalog
from imgrec.training import runs, trainer
from tests.helpers.datasets import make_image_folder
from tests.helpers.settings import make_settings
from tests.helpers.training import tiny_config, wait_until


def test_a_cancelled_runs_best_epoch_is_saved_as_a_model(tmp_path):
    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=12)
    run = runs.create_run(tiny_config(folder, epochs=6, throttle_seconds=0.2), settings)
    with pytest.raises(runs.RunError, match="Only a cancelled, interrupted or failed run can be saved"):
        runs.finish_early(run.id, settings)

    def cancel_after_first_epoch():
        wait_until(lambda: len(run.metrics()) >= 1, 120, "a finished epoch", run)
        runs.cancel(run.id, settings)

    watcher = threading.Thread(target=cancel_after_first_epoch)
    watcher.start()
    assert trainer.execute_run(run, settings)["state"] == runs.CANCELLED
    watcher.join()
    done = run.training_state()["epoch"]
    assert 1 <= done < 6 and catalog.versions("tiny", settings) == []

    runs.finish_early(run.id, settings)
    wait_until(lambda: run.state in runs.FINAL_STATES, 120, "the saved run to finish", run)
    status = run.status()
    assert status["state"] == runs.COMPLETED, run.log_tail()
    assert (status["total_epochs"], status["planned_epochs"]) == (done, 6)
    assert [r["epoch"] for r in run.metrics()] == list(range(1, done + 1))  # no epoch trained after the cancel
    card = catalog.load_card("tiny", "1", settings)
    assert card.metrics["epochs_trained"] == done and card.metrics["best_epoch"] <= done


def test_a_run_without_a_finished_epoch_cannot_be_saved(tmp_path):
    settings = make_settings(tmp_path)
    run = runs.create_run(tiny_config(tmp_path / "nowhere"), settings)
    runs.cancel(run.id, settings)  # queued, no worker: cancelled at once
    with pytest.raises(runs.RunError, match="has not finished an epoch yet"):
        runs.finish_early(run.id, settings)


def test_the_eta_is_paced_by_finished_epochs_not_the_slow_first_batches():
    # A resumed run: 3 epochs of 60 s finished; its first batch took 30 s (tracing) of 100 steps.
    assert trainer.eta_seconds(60.0, elapsed=30.0, steps_done=1, steps=100, epochs_after=4) == 30 + 4 * 60
    # Without a finished epoch, the epoch's own pace once enough batches ran, and no guess before.
    assert trainer.eta_seconds(None, elapsed=1.0, steps_done=2, steps=100, epochs_after=4) is None
    assert trainer.eta_seconds(None, elapsed=10.0, steps_done=10, steps=100, epochs_after=1) == 90 + 100
    assert trainer.eta_seconds(60.0, elapsed=75.0, steps_done=99, steps=100, epochs_after=0) == 0


def test_the_time_estimate_comes_from_earlier_runs_of_the_same_setup(tmp_path):
    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=8)
    config = tiny_config(folder, epochs=2)
    assert runs.estimate_seconds(config, settings) is None  # nothing to go by yet
    run = trainer.train(config, settings)
    assert run.state == runs.COMPLETED, run.log_tail()
    epochs = [row["seconds"] for row in run.metrics()]
    metrics = run.status()["metrics"]
    estimate = runs.estimate_seconds(tiny_config(folder, epochs=6), settings)
    overhead = metrics["wall_seconds"] - metrics["train_seconds"]
    assert estimate.runs == 1
    assert estimate.seconds == pytest.approx(6 * sum(epochs) / len(epochs) + overhead, abs=0.2)
    assert runs.estimate_seconds(tiny_config(folder, image_size=24), settings) is None  # another size

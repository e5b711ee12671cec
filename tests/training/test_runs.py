"""Training-run bookkeeping: the status file is the truth, the database mirrors it best effort."""

from __future__ import annotations

import logging

from imgrec.predlog.store import open_store
from imgrec.training import runs
from imgrec.training.config import RunConfig
from tests.helpers.datasets import make_image_folder
from tests.helpers.settings import make_settings

A_DEAD_PID = 2**22 + 12345  # above the kernel's default pid_max: never a live process


def tiny_run_config(folder) -> RunConfig:
    return RunConfig(name="mirror", dataset=str(folder), backbone="small_cnn", image_size=16, weights=None, epochs=2)


def test_every_status_write_is_mirrored_and_a_dead_worker_is_recorded_as_interrupted(tmp_path):
    settings = make_settings(tmp_path)
    run = runs.create_run(tiny_run_config(make_image_folder(tmp_path / "ds", per_class=2)), settings)
    with open_store(settings) as store:
        [row] = store.run_statuses()
    assert (row["run_id"], row["name"], row["state"], row["total_epochs"]) == (run.id, "mirror", "queued", 2)

    run.update_status(state=runs.RUNNING, pid=A_DEAD_PID, epoch=1)
    assert runs.get_run(run.id, settings).status()["state"] == runs.INTERRUPTED
    assert run.raw_status()["state"] == runs.INTERRUPTED  # written back, not only reported
    with open_store(settings) as store:
        [row] = store.run_statuses()
    assert (row["state"], row["epoch"]) == (runs.INTERRUPTED, 1) and "Resume it" in row["message"]


def test_a_database_that_is_down_never_stops_a_run_and_is_not_retried_at_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(runs, "_mirror_paused_until", {})
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the database folder should be")
    settings = make_settings(tmp_path, database_url=f"sqlite:///{blocker}/imgrec.db")
    with caplog.at_level(logging.WARNING, logger="imgrec.training.runs"):
        run = runs.create_run(tiny_run_config(make_image_folder(tmp_path / "ds", per_class=2)), settings)
        for epoch in range(1, 4):
            run.update_status(epoch=epoch)
    assert run.raw_status()["epoch"] == 3  # the file, the truth, has every write
    warnings = [r for r in caplog.records if "not mirrored to the database" in r.getMessage()]
    assert len(warnings) == 1 and f"retrying in {runs.MIRROR_RETRY_SECONDS} s" in warnings[0].getMessage()


def test_progress_from_a_fast_loop_is_written_at_most_every_interval(tmp_path, monkeypatch):
    settings = make_settings(tmp_path)
    run = runs.create_run(tiny_run_config(make_image_folder(tmp_path / "ds", per_class=2)), settings)
    clock = [1000.0]
    monkeypatch.setattr(runs.time, "monotonic", lambda: clock[0])
    for step in range(1, 11):  # ten batches within one interval: only the first is written
        run.report_progress(step=step)
        clock[0] += runs.PROGRESS_INTERVAL_SECONDS / 20
    assert run.raw_status()["step"] == 1
    clock[0] += runs.PROGRESS_INTERVAL_SECONDS
    run.report_progress(step=11)
    assert run.raw_status()["step"] == 11

"""``python -m imgrec runs``: list, show, cancel and resume a run, with a real worker; errors without tracebacks."""

from __future__ import annotations

import json

import pytest

from imgrec.registry import catalog
from imgrec.training import runs
from tests.helpers.cli import run_cli
from tests.helpers.datasets import make_image_folder
from tests.helpers.settings import make_settings
from tests.helpers.training import tiny_config, wait_until


def json_lines(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.slow
def test_runs_list_show_cancel_resume_and_refusals(tmp_path):
    settings = make_settings(tmp_path)
    folder = make_image_folder(tmp_path / "ds", per_class=12)
    run = runs.create_run(tiny_config(folder, name="cli-run"), settings)  # queued, no worker yet

    [listed] = json_lines(run_cli(["runs", "list", "--json"], settings))
    assert (listed["run_id"], listed["state"], listed["name"], listed["total_epochs"]) == (
        run.id, runs.QUEUED, "cli-run", 2)
    [shown] = json_lines(run_cli(["runs", "show", run.id, "--json"], settings))
    assert shown["run_id"] == run.id and shown["state"] == runs.QUEUED and shown["dataset"] == str(folder)

    cancelled = run_cli(["runs", "cancel", run.id], settings)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] == runs.CANCELLED  # nothing was running: cancelled at once
    assert run.state == runs.CANCELLED and run.cancel_requested()

    [resumed] = json_lines(run_cli(["runs", "resume", run.id, "--json"], settings))
    assert resumed["state"] == runs.QUEUED and resumed["resumes"] == 1 and resumed["pid"]
    assert not run.cancel_requested()
    wait_until(lambda: run.state in runs.FINAL_STATES, 120, "the resumed worker to finish", run)
    [final] = json_lines(run_cli(["runs", "show", run.id, "--json"], settings))
    assert final["state"] == runs.COMPLETED, run.log_tail()
    assert final["model_ref"] == "cli-run@1" and catalog.versions("cli-run", settings) == ["1"]
    assert [r["epoch"] for r in run.metrics()] == [1, 2]
    text = run_cli(["runs", "list"], settings)
    assert text.returncode == 0 and text.stdout.split() == [run.id, "completed", "epoch", "2/2", "cli-run@1"]

    # Refusals: exit code 2 and one clear line, never a traceback.
    for args, message in [
        (["runs", "cancel", run.id], f"error: Run '{run.id}' is already completed."),
        (["runs", "resume", run.id], f"error: Run '{run.id}' is completed. Only a cancelled, interrupted or "
                                     "failed run resumes."),
        (["runs", "show", "nope"], f"error: No run 'nope'. Recent runs: {run.id}."),
        (["runs", "show"], "error: `runs show` needs a RUN_ID."),
    ]:
        result = run_cli(args, settings)
        assert (result.returncode, result.stderr.strip(), result.stdout) == (2, message, ""), args

"""``imgrec train`` and ``imgrec runs``: training and training runs (``imgrec evaluate`` is in ``evaluate``)."""

from __future__ import annotations

import json
from pathlib import Path

from imgrec.cli.args import EXIT_OK, EXIT_SOME_FAILED
from imgrec.core.settings import Settings
from imgrec.training import runs, trainer
from imgrec.training.config import RunConfig


def add_parser(commands) -> None:
    train = commands.add_parser("train", help="train a model from a run config (YAML); one run trains at a time")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="run config YAML (see imgrec.training.trainer.RunConfig)")
    source.add_argument("--run", metavar="RUN_ID", help="execute or resume an existing run in this process")
    train.add_argument("--detach", action="store_true", help="start the run in the background, print its id")
    train.set_defaults(handler=run_train)

    runs_parser = commands.add_parser("runs", help="list, show, cancel or resume training runs")
    runs_parser.add_argument("action", nargs="?", default="list", choices=("list", "show", "cancel", "resume"))
    runs_parser.add_argument("run_id", nargs="?", metavar="RUN_ID")
    runs_parser.add_argument("--json", action="store_true")
    runs_parser.set_defaults(handler=run_runs)


def run_train(args, settings: Settings) -> int:
    if args.run:
        return trainer.main_worker(args.run, settings)
    run_config = RunConfig.from_yaml(args.config)
    if args.detach:
        run = runs.submit(run_config, settings)
        print(run.id)
        return EXIT_OK
    run = runs.create_run(run_config, settings)
    print(f"run {run.id}", flush=True)
    status = trainer.execute_run(run, settings)
    print(f"{status['state']}: {status.get('message', '')}")
    return EXIT_OK if status["state"] == runs.COMPLETED else EXIT_SOME_FAILED


def run_runs(args, settings: Settings) -> int:
    if args.action == "list":
        rows = [run.status() for run in runs.list_runs(settings)]
        for row in rows:
            if args.json:
                print(json.dumps(row))
            else:
                print(f"{row['run_id']}  {row['state']:<11} epoch {row.get('epoch', 0)}/{row.get('total_epochs', '?')}"
                      f"  {row.get('model_ref') or ''}")
        if not rows and not args.json:
            print("No training runs yet.")
        return EXIT_OK
    if not args.run_id:
        raise runs.RunError(f"`runs {args.action}` needs a RUN_ID.")
    if args.action == "show":
        status = runs.get_run(args.run_id, settings).status()
    elif args.action == "cancel":
        status = runs.cancel(args.run_id, settings)
    else:
        status = runs.resume(args.run_id, settings).status()
    print(json.dumps(status, indent=None if args.json else 2))
    return EXIT_OK

"""``imgrec train``, ``imgrec evaluate`` and ``imgrec runs``: training, evaluation and training runs."""

from __future__ import annotations

import json
from pathlib import Path

from imgrec.cli.args import EXIT_OK, EXIT_SOME_FAILED, positive_int
from imgrec.core.settings import Settings
from imgrec.training import runs, trainer
from imgrec.training.config import RunConfig
from imgrec.training.evaluation import evaluate_registered


def add_parser(commands) -> None:
    train = commands.add_parser("train", help="train a model from a run config (YAML); one run trains at a time")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path, help="run config YAML (see imgrec.training.trainer.RunConfig)")
    source.add_argument("--run", metavar="RUN_ID", help="execute or resume an existing run in this process")
    train.add_argument("--detach", action="store_true", help="start the run in the background, print its id")
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("evaluate", help="evaluate a registered model on a dataset split")
    evaluate.add_argument("model", metavar="MODEL", help="name or name@version")
    evaluate.add_argument("--dataset", required=True, help="cifar10, fashion_mnist or a folder")
    evaluate.add_argument("--split", default="test", choices=("train", "val", "test"))
    evaluate.add_argument("--limit-per-class", type=positive_int, help="evaluate on at most N images per class")
    evaluate.add_argument("--json", action="store_true", help="the full report as JSON")
    evaluate.set_defaults(handler=run_evaluate)

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


def run_evaluate(args, settings: Settings) -> int:
    report = evaluate_registered(args.model, args.dataset, args.split, settings, args.limit_per_class)
    if args.json:
        print(json.dumps(report.to_dict()))
        return EXIT_OK
    summary = report.summary()
    print(f"{args.model} on {args.dataset}/{args.split} ({report.samples} images): accuracy {report.accuracy:.2%}, "
          f"top-3 {report.top3_accuracy:.2%}, macro F1 {report.macro_f1:.3f}, weighted F1 {report.weighted_f1:.3f}, "
          f"ECE {summary['ece']:.3f} (T={summary['temperature']:.2f}: {summary['ece_calibrated']:.3f})")
    for row in report.per_class:
        print(f"  {row['class']:>16}  P {row['precision']:.3f}  R {row['recall']:.3f}  F1 {row['f1']:.3f}  "
              f"n {row['support']}")
    print("\n".join(report.text_tables()))
    return EXIT_OK


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

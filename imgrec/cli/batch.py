"""``imgrec batch``: predict a folder, glob, path list or bucket on Ray Data and write the results to Parquet."""

from __future__ import annotations

import sys

from imgrec.batch.job import Progress, run_batch
from imgrec.cli.args import EXIT_OK, EXIT_SOME_FAILED, positive_int
from imgrec.core.settings import Settings


def add_parser(commands) -> None:
    batch = commands.add_parser("batch", help="predict many images on Ray Data, results to Parquet")
    batch.add_argument("source", metavar="SOURCE",
                       help="a folder, a glob, a CSV/Parquet list of paths, or a bucket URL (s3://bucket/prefix)")
    batch.add_argument("--model", help="name or name@version (default: the active model)")
    batch.add_argument("--output", required=True,
                       help="folder or bucket prefix for the Parquet parts, e.g. results.parquet")
    batch.add_argument("--ray-address", help="join this Ray cluster (default: start a local Ray on this machine)")
    batch.add_argument("--actors", type=positive_int, help="model actors (default: one per CPU but one)")
    batch.add_argument("--top-k", type=positive_int, help="labels per image (default: IMGREC_DEFAULT_TOP_K)")
    batch.add_argument("--log", action="store_true", help="also write the predictions to the prediction log")
    batch.add_argument("--skip-existing", action="store_true",
                       help="leave out images the output already has rows for (finish an interrupted job)")
    batch.set_defaults(handler=run)


def run(args, settings: Settings) -> int:
    bar = _ProgressBar()
    summary = run_batch(args.source, args.model, args.output, settings, ray_address=args.ray_address, log=args.log,
                        skip_existing=args.skip_existing, actors=args.actors, top_k=args.top_k, on_progress=bar.update)
    bar.close()
    print(summary.line())
    return EXIT_SOME_FAILED if summary.failures else EXIT_OK


class _ProgressBar:
    """A tqdm bar on stderr, made on the first report (when the total is known)."""

    def __init__(self):
        self.bar = None

    def update(self, progress: Progress) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=progress.total, unit="image", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(progress.images - self.bar.n)
        self.bar.set_postfix(failed=progress.failures)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

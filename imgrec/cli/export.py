"""``imgrec export``: export a model to SavedModel, TFLite and ONNX, with a parity report."""

from __future__ import annotations

import sys

from imgrec.cli.args import EXIT_OK, EXIT_SOME_FAILED
from imgrec.core.settings import Settings
from imgrec.export.exporter import export_model
from imgrec.registry.exports import FORMATS


def add_parser(commands) -> None:
    export = commands.add_parser("export", help="export a model (SavedModel, TFLite, ONNX) with a parity report")
    export.add_argument("model", metavar="MODEL", help="model name")
    export.add_argument("--version", help="model version (default: the latest)")
    export.add_argument("--formats", nargs="+", default=["all"], metavar="FORMAT",
                        help="any of: " + ", ".join(FORMATS) + " (default: all)")
    export.set_defaults(handler=run)


def run(args, settings: Settings) -> int:
    results = export_model(args.model, args.version, args.formats, settings,
                           progress=lambda message: print(message, file=sys.stderr, flush=True))
    for result in results:
        print(result.summary())
    return EXIT_OK if all(result.ok for result in results) else EXIT_SOME_FAILED

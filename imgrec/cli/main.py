"""``python -m imgrec``: builds the parser from the command modules, reads the settings once, dispatches."""

from __future__ import annotations

import argparse
import sys

from imgrec.cli import evaluate, export, importing, log, models, predict, serve, training
from imgrec.cli.args import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from imgrec.core.errors import ImgrecError
from imgrec.core.settings import get_settings

COMMAND_MODULES = (predict, models, log, serve, export, training, evaluate, importing)  # in the order `--help` lists them


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Read here, not while building the parser: a bad IMGREC_* value is an error line, not a traceback.
        settings = get_settings()
        return args.handler(args, settings)
    except ImgrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `imgrec runs | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imgrec", description="imgrec: image-recognition workbench")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parser(commands)
    return parser

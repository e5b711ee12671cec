"""``python -m imgrec``: builds the parser from the command modules and turns errors into exit codes."""

from __future__ import annotations

import argparse
import sys

from imgrec.cli import export, log, models, predict, serve, training
from imgrec.cli.args import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from imgrec.core.errors import ImgrecError

COMMAND_MODULES = (predict, models, log, serve, export, training)  # in the order `--help` lists them


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
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

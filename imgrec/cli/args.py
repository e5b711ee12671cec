"""The CLI's argparse value types and exit codes, shared by every command module."""

from __future__ import annotations

import argparse
from datetime import date

EXIT_OK, EXIT_SOME_FAILED, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C


def _at_least(minimum: int, parse: type, noun: str):
    """An argparse type: ``parse(text)``, refused with a clear message unless it is ``minimum`` or more."""

    def parse_argument(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not {noun}. Expected {minimum} or more.") from None
        if not value >= minimum:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{text} is out of range. Expected {minimum} or more.")
        return value

    return parse_argument


positive_int = _at_least(1, int, "a whole number")
non_negative_float = _at_least(0, float, "a number")


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date. Expected YYYY-MM-DD.") from None

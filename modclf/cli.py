"""Helpers shared by the command-line scripts (train.py, score.py, serve.py)."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable

from .data import DataError
from .model import ModelError


class UserError(Exception):
    """An error caused by the user's input or configuration; printed without a traceback."""


def add_common_logging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="logging verbosity (default: WARNING)")


def exit_on_user_error(func: Callable[..., int]) -> Callable[..., int]:
    """Turn expected errors into one clear message on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return func(*args, **kwargs)
        except (DataError, ModelError, UserError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper

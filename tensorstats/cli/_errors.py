"""Exit codes of the ``tensorstats`` command and the one-line error each case prints.

The codes are part of the command line's interface (``docs/cli.md``); scripts
may rely on them.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import (
    DamagedStoreError,
    FormatVersionError,
    NotARunStoreError,
    StoreNotFoundError,
    UnknownSeriesError,
)


class Exit(enum.IntEnum):
    """Exit status of the ``tensorstats`` command."""

    OK = 0
    INTERNAL = 1
    """An unexpected error (a bug, or a damaged store the checks did not foresee)."""
    USAGE = 2
    """A bad option or argument (click's own code)."""
    NOT_FOUND = 3
    """No run store, or no input file, at the given path."""
    NOT_A_RUN = 4
    """Not a tensorstats run store, a damaged one, or an unreadable input file."""
    FORMAT_VERSION = 5
    """A store written in a format version this tensorstats cannot read (e.g. newer)."""
    UNKNOWN_NAME = 6
    """An unknown kind, layer or scalar, or a layer pattern that matches nothing."""
    EXISTS = 7
    """The output exists; nothing is overwritten without ``--overwrite``."""
    MISSING_EXTRA = 8
    """An optional dependency (an extra such as ``plot`` or ``parquet``) is not installed."""
    DAMAGED = 9
    """Part of a store is damaged: a chunk missing, truncated or undecodable, or a series'
    metadata unreadable (``tensorstats check`` lists every problem)."""


class CliError(click.ClickException):
    """An error the command reports on one line with its own exit code."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.exit_code = int(code)

    def show(self, file: Any = None) -> None:
        click.echo(f"tensorstats: error: {self.format_message()}", err=True)


_CASES: tuple[tuple[type[BaseException], Exit], ...] = (
    (StoreNotFoundError, Exit.NOT_FOUND),
    (FileNotFoundError, Exit.NOT_FOUND),
    (DamagedStoreError, Exit.DAMAGED),
    (NotARunStoreError, Exit.NOT_A_RUN),
    (FormatVersionError, Exit.FORMAT_VERSION),
    (UnknownSeriesError, Exit.UNKNOWN_NAME),
    (FileExistsError, Exit.EXISTS),
    (ImportError, Exit.MISSING_EXTRA),
)


def classify(exc: BaseException) -> tuple[Exit, str]:
    """The exit code and the one-line message of an exception."""
    for cls, code in _CASES:
        if isinstance(exc, cls):
            return code, _one_line(exc)
    return Exit.INTERNAL, (f"{type(exc).__name__}: {_one_line(exc)} "
                           "(run with --debug for the traceback)")


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


F = TypeVar("F", bound=Callable[..., Any])


def reported(func: F) -> F:
    """Turn exceptions raised by a command into one line on stderr and an exit code.

    With ``--debug`` (``ctx.obj["debug"]``) the exception propagates with its
    traceback instead.
    """
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            ctx = click.get_current_context(silent=True)
            if ctx is not None and (ctx.find_root().obj or {}).get("debug"):
                raise
            code, message = classify(exc)
            click.echo(f"tensorstats: error: {message}", err=True)
            sys.exit(int(code))

    return wrapper  # type: ignore[return-value]

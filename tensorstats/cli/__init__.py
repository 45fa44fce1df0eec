"""The ``tensorstats`` command: look into runs without writing code.

``tensorstats info RUN``, ``analyze RUN... -o OUT``, ``report RUN... -o DIR``,
``import-scalars SOURCE --into RUN`` and ``check RUN...``; ``tensorstats COMMAND --help`` says
more, and ``docs/cli.md`` lists the exit codes. Built on click (a small,
dependency-free library with nested commands, typed options, test runner and
a progress bar; typer would add typing-driven declarations on top of click and
two more dependencies for no gain here). Only click is imported at start-up,
so ``tensorstats --help`` answers at once; each command imports what it uses.
"""

from __future__ import annotations

import click

from .._version import __version__
from ._analyze import analyze
from ._check import check
from ._errors import Exit
from ._import import import_scalars
from ._info import info
from ._report import report

__all__ = ["Exit", "cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tensorstats")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Statistics of neural-network tensors over training, from the command line.

    \b
    Exit codes: 0 ok, 1 unexpected error, 2 bad usage, 3 no such store or
    file, 4 not a tensorstats store (or damaged), 5 unsupported format
    version, 6 unknown kind/layer/scalar or a pattern matching nothing,
    7 output exists, 8 optional dependency missing, 9 damaged store
    (tensorstats check lists the problems).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


for _command in (info, analyze, report, import_scalars, check):
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``tensorstats`` console script."""
    cli(prog_name="tensorstats")

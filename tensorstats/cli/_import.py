"""``tensorstats import-scalars SOURCE --into RUN``: loss curves logged elsewhere, into a run."""

from __future__ import annotations

import os
from typing import Any

import click

from ._common import progress
from ._errors import reported


def read_source(source: str, step: str | None) -> dict[str, tuple[Any, Any]]:
    """``{name: (steps, values)}`` of a CSV file (by suffix) or TensorBoard event files."""
    from ..scalars import _csv_series, _tensorboard_series

    if not os.path.exists(source):
        raise FileNotFoundError(f"no such file or folder: {source!r}")
    if source.lower().endswith(".csv"):
        return _csv_series(source, step=step)
    if step is not None:
        raise click.UsageError("--step applies to CSV sources only")
    return _tensorboard_series(source)


def import_into(series: dict[str, tuple[Any, Any]], run_path: str, prefix: str) -> int:
    """Record the series as scalars of the run at ``run_path``; nothing written on a clash."""
    from ..collect import Recorder
    from ..run import open_run

    existing = set(open_run(run_path).scalars.data_vars)
    names = {prefix + name: data for name, data in series.items()}
    clash = sorted(n for n in names if n in existing)
    if clash:
        raise FileExistsError(f"{run_path!r} already has scalar(s) {clash}; nothing imported. "
                              "Use --prefix to import them under other names")
    count = 0
    with Recorder(run_path, mode="a") as rec:
        for name, (steps, values) in progress(names.items(), "importing"):
            for s, v in zip(steps, values, strict=True):
                rec.record_scalar(name, float(v), step=int(s))
            count += len(steps)
    return count


@click.command("import-scalars")
@click.argument("source")
@click.option("--into", "run_path", required=True, metavar="RUN",
              help="The run store to add the scalars to.")
@click.option("--prefix", default="", help="Prepended to every imported name, e.g. 'tb/'.")
@click.option("--step", default=None,
              help="CSV only: the step column (default: step, _step, global_step, iteration).")
@reported
def import_scalars(source: str, run_path: str, prefix: str, step: str | None) -> None:
    """Import scalars (loss curves...) from SOURCE into RUN.

    SOURCE is a CSV file (``*.csv``: W&B or TensorBoard CSV exports, any table
    with a step column) or TensorBoard event files (a file or a folder).
    Existing scalars of RUN are never overwritten.
    """
    series = read_source(source, step)
    if not series:
        raise ValueError(f"{source!r} holds no scalar series")
    count = import_into(series, run_path, prefix)
    click.echo(f"imported {len(series)} scalar series ({count} values) from {source} "
               f"into {run_path}: {', '.join(prefix + n for n in series)}")

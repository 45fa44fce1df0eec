"""``tensorstats report RUN... -o DIR``: the self-contained HTML report."""

from __future__ import annotations

import click

from ._common import dask_progress, progress, run_names, split_list
from ._errors import reported


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN...")
@click.option("-o", "--output", "out", required=True, metavar="DIR",
              help="Folder to write index.html into.")
@click.option("--kind", default=None, help="Kind to report on (default: feature, else weight).")
@click.option("--layers", "layers", multiple=True, metavar="GLOB",
              help="Layer name pattern(s), shell-style.")
@click.option("--overwrite", is_flag=True, help="Replace an existing index.html in DIR.")
@reported
def report(runs: tuple[str, ...], out: str, kind: str | None, layers: tuple[str, ...],
           overwrite: bool) -> None:
    """Write an offline HTML report of RUN(s), side by side, to DIR/index.html."""
    from ..report import write_report
    from ..run import open_run

    opened = {name: open_run(path) for name, path in run_names(runs).items()}
    with dask_progress():
        path = write_report(opened, out, kind=kind, layers=split_list(layers) or None,
                            progress=progress, overwrite=overwrite)
    click.echo(f"report written to {path}")
    click.echo(f"open it in a browser: file://{path.resolve()}")

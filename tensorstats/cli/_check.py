"""``tensorstats check RUN...``: verify stores; list every problem; exit 9 if any."""

from __future__ import annotations

import json

import click

from ._errors import Exit, reported


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN...")
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
@reported
def check(runs: tuple[str, ...], as_json: bool) -> None:
    """Verify RUN(s): every committed chunk present and whole, metadata consistent,
    steps increasing.

    Prints one line per problem (errors, and warnings such as an append cut short by
    a crash, which readers handle). Exits 9 if any store has an error, 0 otherwise.
    Reads every chunk: about one full read of each store.
    """
    import sys

    from ..store.backend import open_backend
    from ..store.check import check_store
    from ._common import progress

    found = {}
    for store in progress(runs, "checking runs"):
        backend = open_backend(store, None)
        if backend.read("zarr.json") is None:
            from ..errors import StoreNotFoundError

            raise StoreNotFoundError(f"no run store at {store!r} (no zarr.json there)")
        found[store] = check_store(backend)
    if as_json:
        click.echo(json.dumps({s: [vars(p) for p in ps] for s, ps in found.items()}, indent=2))
    else:
        for store, problems in found.items():
            errors = sum(p.severity == "error" for p in problems)
            click.echo(f"{store}: " + ("ok" if not problems else
                                       f"{errors} errors, {len(problems) - errors} warnings"))
            for p in problems:
                click.echo(f"  {p}")
    if any(p.severity == "error" for ps in found.values() for p in ps):
        sys.exit(int(Exit.DAMAGED))

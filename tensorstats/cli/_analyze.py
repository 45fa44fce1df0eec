"""``tensorstats analyze RUN... -o OUT``: moments, normality, shift and correlation per layer.

Results go to one file or store whose format is chosen by the suffix of OUT:

- ``.zarr`` and ``.nc``: a tree ``/<analysis>/<run>/<kind>/<layer>`` of
  Datasets (names percent-encoded as in the run store; the original in the
  node's ``attrs["name"]``). NetCDF needs the ``netcdf`` extra (h5netcdf).
- ``.csv`` and ``.parquet``: one tidy table, a row per label combination,
  with columns ``analysis``, ``run``, ``kind``, ``layer``, the dims and the
  variables (Parquet needs the ``parquet`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click

from ._common import dask_progress, match_layers, open_runs, pick_kind, progress, split_list
from ._errors import CliError, Exit, reported

SUFFIXES = (".zarr", ".nc", ".csv", ".parquet")
MOMENT_STATS = ("mean", "std", "skew", "kurtosis")
"""The moments correlated with a scalar by ``--correlate``."""


@dataclass
class Plan:
    """What ``analyze`` computes for each selected (run, kind, layer)."""

    by: tuple[str, ...] | None
    tests: tuple[str, ...]
    shift: str | None
    correlate: str | None
    detrend: str | None
    max_lag: int
    ddof: int


def _results(run: Any, kind: str, layer: str, plan: Plan) -> dict[str, Any]:
    """Lazy results of one series, keyed by analysis name."""
    import tensorstats as ts

    da = run[kind, layer]
    stored = run.moments(kind, layer)
    out = {"moments": ts.moments(stored if stored is not None else da, by=plan.by,
                                 ddof=plan.ddof)}
    if plan.tests:
        out["normality"] = ts.normality(da, by=plan.by, tests=plan.tests)
    if plan.shift:
        out["shift"] = ts.shift(da, reference=plan.shift, by=plan.by)
    if plan.correlate:
        y = run.scalars[plan.correlate]
        x = out["moments"][list(MOMENT_STATS)].to_dataarray("stat")
        out["correlate"] = ts.correlate(x, y, detrend=plan.detrend, max_lag=plan.max_lag,
                                        align="mean")
    return out


def _check_scalar(runs: dict[str, Any], name: str | None) -> None:
    from ..errors import UnknownSeriesError

    for run in runs.values() if name else ():
        if name not in run.scalars:
            raise UnknownSeriesError(f"--correlate {name!r}: no such scalar in {run.store!r}; "
                                     f"scalars: {list(run.scalars.data_vars)}")


def _collect(runs: dict[str, Any], kinds: Sequence[str], layers: Sequence[str],
             plan: Plan) -> dict[tuple[str, str, str, str], Any]:
    """``{(analysis, run, kind, layer): lazy Dataset}`` for every selected series."""
    todo: dict[tuple[str, str, str, str], Any] = {}
    for name, run in progress(runs.items(), "analysing runs"):
        for kind in ([pick_kind(run, k) for k in kinds] if kinds else [pick_kind(run, None)]):
            for layer in match_layers(run.layers(kind), layers, kind=kind, store=run.store):
                for analysis, ds in _results(run, kind, layer, plan).items():
                    todo[(analysis, name, kind, layer)] = ds
    return todo


def _compute(todo: dict[tuple[str, str, str, str], Any]) -> dict[tuple[str, str, str, str], Any]:
    import dask

    keys = list(todo)
    with dask_progress():
        values = dask.compute(*[todo[k] for k in keys])
    return dict(zip(keys, values, strict=True))


def _tree(results: dict[tuple[str, str, str, str], Any]) -> Any:
    import xarray as xr

    from ..store.names import encode_name

    nodes: dict[str, Any] = {}
    for (analysis, run, kind, layer), ds in results.items():
        path = "/".join(encode_name(p) for p in (analysis, run, kind, layer))
        nodes[path] = ds.assign_attrs(name=layer, kind=kind, run=run, analysis=analysis)
    return xr.DataTree.from_dict(nodes)


def _table(results: dict[tuple[str, str, str, str], Any]) -> Any:
    import pandas as pd

    from ..stats.tidy import to_frame

    frames = []
    for (analysis, run, kind, layer), ds in results.items():
        frame = to_frame(ds)
        for col, value in (("layer", layer), ("kind", kind), ("run", run),
                           ("analysis", analysis)):
            frame.insert(0, col, value)
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for col in table.columns:  # labels absent from some analyses must stay integers
        if col in ("step", "channel", "lag", "count", "nan_count", "inf_count", "n",
                   "n_reference") and table[col].dtype.kind == "f":
            table[col] = table[col].astype("Int64")
    return table


def write(results: dict[tuple[str, str, str, str], Any], out: str) -> None:
    """Write the results in the format the suffix of ``out`` names."""
    suffix = os.path.splitext(out.rstrip("/"))[1].lower()
    if suffix == ".zarr":
        import warnings

        with warnings.catch_warnings():
            # zarr-python warns that fixed-width strings (the ``test`` and
            # ``statistic`` labels) have no Zarr v3 spec yet; xarray reads them back
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification")
            _tree(results).to_zarr(out, mode="w-", consolidated=False)
    elif suffix == ".nc":
        try:
            import h5netcdf  # noqa: F401
        except ImportError as e:
            raise ImportError("writing NetCDF needs h5netcdf: pip install "
                              "'tensorstats[netcdf]'") from e
        _write_atomically(_netcdf_attrs(_tree(results)),
                          lambda tree, path: tree.to_netcdf(path, engine="h5netcdf"), out)
    elif suffix == ".csv":
        _write_atomically(_table(results), lambda t, path: t.to_csv(path, index=False), out)
    else:
        try:
            import pyarrow  # noqa: F401
        except ImportError as e:
            raise ImportError("writing Parquet needs pyarrow: pip install "
                              "'tensorstats[parquet]'") from e
        _write_atomically(_table(results), lambda t, path: t.to_parquet(path, index=False),
                          out)


def _netcdf_attr(value: Any) -> Any:
    """An attribute NetCDF can hold: numbers, strings and flat lists of them as they
    are; anything else (a dict such as ``module``, None, nested lists) as JSON text."""
    import json

    import numpy as np

    if isinstance(value, (str, bool, int, float, np.number, np.bool_)):
        return value
    if (isinstance(value, (list, tuple)) and value
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return list(value)
    return json.dumps(value, default=str)


def _netcdf_attrs(tree: Any) -> Any:
    """A copy of ``tree`` whose node and variable attrs NetCDF can store."""
    def fix(ds: Any) -> Any:
        ds = ds.copy()
        ds.attrs = {k: _netcdf_attr(v) for k, v in ds.attrs.items()}
        for var in ds.variables.values():
            var.attrs = {k: _netcdf_attr(v) for k, v in var.attrs.items()}
        return ds

    return tree.map_over_datasets(fix)


def _write_atomically(obj: Any, writer: Any, out: str) -> None:
    """Write a file next to ``out`` and move it into place, so a failure leaves nothing."""
    directory, name = os.path.split(os.path.abspath(out))
    tmp = os.path.join(directory, f".{name}.partial-{os.getpid()}")
    try:
        writer(obj, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_out(out: str, overwrite: bool) -> None:
    """Before any work: a known suffix, and no existing OUT unless ``overwrite``."""
    suffix = os.path.splitext(out.rstrip("/"))[1].lower()
    if suffix not in SUFFIXES:
        raise CliError(f"-o {out!r}: the suffix chooses the format; use one of "
                       f"{', '.join(SUFFIXES)}", Exit.USAGE)
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out!r} exists; pass --overwrite to replace it")


def _remove(out: str) -> None:
    """Delete an existing OUT (``--overwrite``), only once the new results are ready."""
    import shutil

    if os.path.isdir(out):
        shutil.rmtree(out)
    elif os.path.exists(out):
        os.remove(out)


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN...")
@click.option("-o", "--output", "out", required=True,
              help="Output file; its suffix picks the format: .zarr, .nc, .csv, .parquet.")
@click.option("--kind", "kinds", multiple=True,
              help="Kind(s) to analyse (repeat or comma-separate). Default: feature, "
                   "else weight.")
@click.option("--layers", "layers", multiple=True, metavar="GLOB",
              help="Layer name pattern(s) (shell-style, e.g. 'conv*'); each must match.")
@click.option("--by", default=None,
              help="Dims to keep, comma-separated (default: run, step, channel as present).")
@click.option("--tests", default="shapiro,anderson", show_default=True,
              help="Normality tests, comma-separated (shapiro, anderson, dagostino, "
                   "jarque_bera), or 'none'.")
@click.option("--shift", type=click.Choice(["initial", "previous"]), default=None,
              help="Distribution shift from the first or the previous logged step.")
@click.option("--correlate", "correlate", default=None, metavar="SCALAR",
              help="Correlate each layer's mean, std, skew and kurtosis with this scalar "
                   "(e.g. loss).")
@click.option("--detrend", type=click.Choice(["difference", "linear", "none"]),
              default="difference", show_default=True, help="Detrending before --correlate.")
@click.option("--max-lag", type=click.IntRange(0), default=3, show_default=True,
              help="Lags -L..L for --correlate, in logged steps.")
@click.option("--ddof", type=click.IntRange(0), default=0, show_default=True,
              help="Delta degrees of freedom of var and std.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@reported
def analyze(runs: tuple[str, ...], out: str, kinds: tuple[str, ...], layers: tuple[str, ...],
            by: str | None, tests: str, shift: str | None, correlate: str | None,
            detrend: str, max_lag: int, ddof: int, overwrite: bool) -> None:
    """Analyse RUN(s) and write the results to OUT (format chosen by its suffix)."""
    test_list = () if tests.strip().lower() == "none" else tuple(split_list([tests]))
    known = ("shapiro", "anderson", "dagostino", "jarque_bera")
    bad = [t for t in test_list if t not in known]
    if bad:
        raise CliError(f"--tests {','.join(bad)}: unknown; choose from {', '.join(known)} "
                       "or none", Exit.USAGE)
    _check_out(out, overwrite)
    opened = open_runs(runs)
    _check_scalar(opened, correlate)
    plan = Plan(by=tuple(split_list([by])) if by else None, tests=test_list, shift=shift,
                correlate=correlate, detrend=None if detrend == "none" else detrend,
                max_lag=max_lag, ddof=ddof)
    todo = _collect(opened, split_list(kinds), list(layers), plan)
    results = _compute(todo)
    if overwrite:
        _remove(out)
    write(results, out)
    n_series = len({k[1:] for k in results})
    click.echo(f"wrote {len(results)} results ({n_series} series x "
               f"{len({k[0] for k in results})} analyses) to {out}")

"""What every plot function shares: the matplotlib import, argument checks, one compute.

Nothing here draws. The public functions check their arguments with these
helpers, select what they will draw while it is still lazy, compute it in one
go (:func:`compute`), and only then hand NumPy arrays to matplotlib.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

try:
    from matplotlib.figure import Figure
except ImportError as err:  # the ``plot`` extra is not installed
    raise ImportError("tensorstats.plot needs matplotlib: pip install 'tensorstats[plot]'") from err

from ..dims import STEP

MAX_LEGEND = 10
"""Most lines a legend lists in full; beyond that a colorbar or a capped legend."""

MAX_TICKS = 12
"""Most step labels written on an axis; more are thinned evenly."""


def check_title(fn: str, title: object) -> str | None:
    """``title`` if it is a string or None, else TypeError."""
    if title is not None and not isinstance(title, str):
        raise TypeError(f"{fn}: title must be a str or None, got {type(title).__name__}")
    return title


def check_bool(fn: str, name: str, value: object) -> bool:
    """``value`` if it is a bool (NumPy's included), else TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_choice(fn: str, name: str, value: object, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{fn}: {name} must be one of {list(choices)}, got {value!r}")
    return value


def as_layers(fn: str, results: object, types: tuple[type, ...], *,
              arg: str = "results") -> tuple[dict[str | None, Any], bool]:
    """``({layer: result}, True)`` for a mapping, ``({None: result}, False)`` for one result.

    Examples
    --------
    >>> as_layers("f", {"fc1": xr.Dataset()}, (xr.Dataset,))[1]
    True
    >>> as_layers("f", 3, (xr.Dataset,))
    Traceback (most recent call last):
    TypeError: f: results must be a Dataset or a mapping {layer: Dataset}, got int
    """
    what = " or ".join(t.__name__ for t in types)
    if isinstance(results, types):  # before Mapping: a Dataset is a Mapping too
        return {None: results}, False
    if isinstance(results, Mapping):
        if not results:
            raise ValueError(f"{fn}: {arg} is an empty mapping; expected at least one layer")
        out: dict[str | None, Any] = {}
        for layer, value in results.items():
            if not isinstance(value, types):
                raise TypeError(f"{fn}: {arg}[{layer!r}] must be a {what}, "
                                f"got {type(value).__name__}")
            out[str(layer)] = value
        return out, True
    raise TypeError(f"{fn}: {arg} must be a {what} or a mapping {{layer: {what}}}, "
                    f"got {type(results).__name__}")


def where(layer: str | None) -> str:
    """`` of layer 'x'`` for a layer of a mapping, nothing for a single result."""
    return "" if layer is None else f" of layer {layer!r}"


def variable(fn: str, ds: xr.Dataset, var: object, layer: str | None = None) -> xr.DataArray:
    """``ds[var]``, or ValueError naming the variable and listing those there are."""
    if not isinstance(var, str):
        raise TypeError(f"{fn}: a variable name must be a str, got {var!r}")
    if var not in ds.data_vars:
        raise ValueError(f"{fn}: variable {var!r} not in the results{where(layer)}; "
                         f"variables: {sorted(map(str, ds.data_vars))}")
    return ds[var]


def require_dims(fn: str, da: xr.DataArray, dims: Sequence[Hashable], what: str) -> None:
    """ValueError unless ``da`` has every dim in ``dims``."""
    missing = [d for d in dims if d not in da.dims]
    if missing:
        raise ValueError(f"{fn}: {what} has no {missing[0]!r} dim; its dims are "
                         f"{list(da.dims)}")


def step_labels(da: xr.DataArray | xr.Dataset) -> np.ndarray:
    """The labels of ``step`` (positions when it has no coordinate)."""
    return np.asarray(da[STEP].values)


def with_steps(da: xr.DataArray) -> xr.DataArray:
    """``da`` with a ``step`` coordinate (positions if it had none), so steps select by label."""
    if STEP in da.dims and STEP not in da.coords:
        return da.assign_coords({STEP: np.arange(da.sizes[STEP])})
    return da


def pick_step(fn: str, labels: np.ndarray, step: object, *, arg: str = "step",
              of: str = "the data") -> Any:
    """The label ``step`` names: ``"first"``, ``"last"`` or a label of ``labels``.

    Examples
    --------
    >>> pick_step("f", np.array([0, 10, 20]), "last")
    20
    >>> pick_step("f", np.array([0, 10, 20]), 5)
    Traceback (most recent call last):
    ValueError: f: step 5 is not a step of the data (steps 0..20, 3 in all)
    """
    if len(labels) == 0:
        raise ValueError(f"{fn}: the data has no step to pick {arg}={step!r} from")
    if isinstance(step, str):
        if step == "first":
            return labels[0].item()
        if step == "last":
            return labels[-1].item()
        raise ValueError(f"{fn}: {arg} must be 'first', 'last' or a step label, got {step!r}")
    try:
        i = pd.Index(labels).get_indexer([step])[0]
    except (TypeError, ValueError) as err:
        raise TypeError(f"{fn}: {arg} must be 'first', 'last' or a step label, "
                        f"got {step!r}") from err
    if i < 0:
        raise ValueError(f"{fn}: step {step!r} is not a step of {of} (steps "
                         f"{labels[0]}..{labels[-1]}, {len(labels)} in all)")
    return labels[i].item()


def compute(*objs: Any) -> tuple:
    """Every lazy object among ``objs`` computed in one pass; the others as they are."""
    import dask

    return dask.compute(*objs)


def _absmax(da: xr.DataArray, dims: Sequence[Hashable]) -> xr.DataArray:
    return abs(da).max(dims)


REDUCERS: dict[str, Callable[[xr.DataArray, Sequence[Hashable]], xr.DataArray]] = {
    "median": lambda da, dims: da.median(dims),
    "mean": lambda da, dims: da.mean(dims),
    "max": lambda da, dims: da.max(dims),
    "min": lambda da, dims: da.min(dims),
    "absmax": _absmax,
}
"""How ``reduce=`` pools the dims a plot has no room for; NaN is skipped."""

REDUCE_DOC = """reduce : {"median", "mean", "max", "min", "absmax"}
        How the dims not drawn (channels, ...) are pooled, skipping NaN;
        ``"absmax"`` is the largest absolute value."""


def reduce_over(da: xr.DataArray, dims: Sequence[Hashable], how: str) -> xr.DataArray:
    """``da`` (in memory) reduced over ``dims`` with ``REDUCERS[how]``; all-NaN gives NaN.

    Examples
    --------
    >>> da = xr.DataArray([[1.0, -3.0], [np.nan, np.nan]], dims=("step", "channel"))
    >>> reduce_over(da, ["channel"], "absmax").values
    array([ 3., nan])
    """
    if not dims:
        return abs(da) if how == "absmax" else da
    with warnings.catch_warnings():  # "All-NaN slice": that cell is NaN, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        return REDUCERS[how](da, list(dims))


def new_figure(nrows: int, ncols: int, *, width: float, height: float,
               sharex: bool = False) -> tuple[Figure, np.ndarray]:
    """A figure (no pyplot, no GUI) and its 2-D array of axes."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=sharex, squeeze=False)
    return fig, axes


def thin_ticks(n: int, max_ticks: int = MAX_TICKS) -> np.ndarray:
    """Positions of at most ``max_ticks`` evenly spread ticks among ``n``, ends included.

    Examples
    --------
    >>> thin_ticks(5).tolist(), thin_ticks(100, 4).tolist()
    ([0, 1, 2, 3, 4], [0, 33, 66, 99])
    """
    if n <= max_ticks:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_ticks).astype(int))


def legend(ax: Any, artists: list) -> None:
    """A legend for several artists; for many, the first few and how many there are."""
    if len(artists) <= 1:
        return
    if len(artists) <= MAX_LEGEND:
        ax.legend(artists, [a.get_label() for a in artists], fontsize="small")
        return
    shown = artists[:MAX_LEGEND - 1]
    ax.legend(shown, [a.get_label() for a in shown], fontsize="small",
              title=f"first {len(shown)} of {len(artists)}", title_fontsize="small")


def finish(fig: Figure, title: str | None) -> Figure:
    """``fig`` with its title set, if any."""
    if title is not None:
        fig.suptitle(title)
    return fig

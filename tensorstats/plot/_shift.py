"""``shift``: each layer's distance from the reference over training steps."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ..dims import RUN, STEP
from ._common import (
    REDUCE_DOC,
    REDUCERS,
    as_layers,
    check_choice,
    check_title,
    compute,
    finish,
    legend,
    new_figure,
    reduce_over,
    variable,
    where,
)

FN = "shift"
BANDS = ("iqr", "range")


def _select(ds: xr.Dataset, layer: str | None, metric: str) -> xr.DataArray:
    da = variable(FN, ds, metric, layer)
    if STEP not in da.dims:
        raise ValueError(f"{FN}: variable {metric!r}{where(layer)} has no {STEP!r} dim; its "
                         f"dims are {list(da.dims)}")
    return da


def _band(da: xr.DataArray, dims: list, band: str) -> tuple[np.ndarray, np.ndarray]:
    """Low and high edge of the band over ``dims``: quartiles or min..max, NaN skipped."""
    with warnings.catch_warnings():  # all-NaN steps (reference "previous") stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        if band == "iqr":
            q = da.quantile([0.25, 0.75], dim=dims).transpose("quantile", ...)
            return np.asarray(q.values[0], float), np.asarray(q.values[1], float)
        return np.asarray(da.min(dims).values, float), np.asarray(da.max(dims).values, float)


def _label(layer: str | None, run: object, metric: str) -> str:
    parts = [str(p) for p in (layer, run) if p is not None]
    return " / ".join(parts) if parts else metric


def shift(results: xr.Dataset | Mapping[str, xr.Dataset], metric: str = "wasserstein", *,
          reduce: str = "median", band: str | None = "iqr",
          title: str | None = None) -> Figure:
    """Distance from the reference over steps: one line per layer (and run), channels reduced.

    Parameters
    ----------
    results : Dataset or mapping {{layer: Dataset}}
        ``ts.shift`` results with a ``step`` dim, maybe ``run`` and
        ``channel``.
    metric : str
        The variable to draw: ``wasserstein``, ``ks``, ``energy``, ``js``,
        ``hellinger``, ``ks_pvalue``...
    {reduce}
        Every dim but ``step`` and ``run`` is reduced.
    band : {{"iqr", "range"}} or None
        A shaded band around each line over the reduced dims: their
        interquartile range or min..max. ``None``, or nothing reduced, draws
        none.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; one line per layer and run, labelled ``"layer / run"``
        (or the layer, the run, or the metric alone); one band (a filled
        ``PolyCollection``) per line.

    Examples
    --------
    >>> import numpy as np, xarray as xr, tensorstats as ts
    >>> from tensorstats.plot import shift
    >>> rng = np.random.default_rng(0)
    >>> w = rng.normal(size=(4, 3, 100)) * np.array([1.0, 1.2, 1.5, 2.0])[:, None, None]
    >>> da = xr.DataArray(w, dims=("step", "channel", "dim_1"), coords={{"step": [0, 1, 2, 3]}})
    >>> fig = shift({{"fc1.weight": ts.shift(da, metrics=("wasserstein",))}})
    >>> ax = fig.axes[0]
    >>> len(ax.get_lines()), len(ax.collections), ax.get_lines()[0].get_label()
    (1, 1, 'fc1.weight')
    """
    if not isinstance(metric, str):
        raise TypeError(f"{FN}: metric must be a variable name, got {metric!r}")
    reduce = check_choice(FN, "reduce", reduce, tuple(REDUCERS))
    if band is not None:
        band = check_choice(FN, "band", band, BANDS)
    title = check_title(FN, title)
    layers, _ = as_layers(FN, results, (xr.Dataset,))
    selected = {layer: _select(ds, layer, metric) for layer, ds in layers.items()}
    loaded = compute(*selected.values())

    fig, axes = new_figure(1, 1, width=7.0, height=4.0)
    ax = axes[0, 0]
    drawn = []
    for layer, da in zip(selected, loaded, strict=True):
        runs = list(da[RUN].values) if RUN in da.dims else [None]
        for run in runs:
            one = da if run is None else da.sel({RUN: run})
            rest = [d for d in one.dims if d != STEP]
            y = reduce_over(one, rest, reduce).transpose(STEP).values
            x = np.asarray(one[STEP].values)
            (line,) = ax.plot(x, np.asarray(y, float), label=_label(layer, run, metric))
            drawn.append(line)
            if band is not None and rest:
                lo, hi = _band(one, rest, band)
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0,
                                label=f"_{line.get_label()} {band}")
    references = {str(ds.attrs["reference"]) for ds in layers.values() if "reference" in ds.attrs}
    ax.set_ylabel(metric if len(references) != 1 else f"{metric} from {references.pop()}")
    ax.set_xlabel(STEP)
    legend(ax, drawn)
    return finish(fig, title)


shift.__doc__ = shift.__doc__.format(reduce=REDUCE_DOC)

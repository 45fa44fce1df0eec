"""``normality_heatmap``: one normality statistic as a layer x step heatmap, FDR hits marked."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.colors import CenteredNorm, LogNorm, Normalize
from matplotlib.figure import Figure

from ..dims import LAYER, STEP, TEST
from ._common import (
    REDUCE_DOC,
    REDUCERS,
    as_layers,
    check_choice,
    check_title,
    compute,
    finish,
    new_figure,
    reduce_over,
    step_labels,
    thin_ticks,
    variable,
    where,
)

FN = "normality_heatmap"
FDR_VAR = "pvalue_fdr"
ZERO_PVALUE = 1e-16
"""Where a p-value of exactly 0 (underflow) is drawn on the log scale, unless lower ones exist."""


def _layers(results: object) -> dict[str, xr.Dataset]:
    if isinstance(results, xr.Dataset):
        if LAYER not in results.dims:
            raise ValueError(f"{FN}: a single Dataset needs a {LAYER!r} dim (one row per "
                             f"layer), its dims are {list(results.dims)}; or pass a mapping "
                             f"{{layer: Dataset}}")
        return {str(label): results.isel({LAYER: i})
                for i, label in enumerate(results[LAYER].values)}
    layers, _ = as_layers(FN, results, (xr.Dataset,))
    return layers


def _pick_test(layers: dict[str, xr.Dataset], names: list[str], test: object) -> object:
    """``test``, checked against every layer's tests, or the first test of the results."""
    tests = None
    for layer, ds in layers.items():
        for name in names:
            da = variable(FN, ds, name, layer)
            if TEST not in da.dims:
                continue
            there = [t.item() for t in np.asarray(da[TEST].values)]
            if tests is None:
                tests = there
            if test is not None and test not in there:
                raise ValueError(f"{FN}: test {test!r} not in the results{where(layer)}; "
                                 f"tests: {there}")
    if tests is None:
        if test is not None:
            raise ValueError(f"{FN}: test={test!r} given, but none of variables {names} "
                             f"has a {TEST!r} dim")
        return None
    return tests[0] if test is None else test


def _select(ds: xr.Dataset, layer: str, name: str, test: object) -> xr.DataArray:
    da = variable(FN, ds, name, layer)
    if STEP not in da.dims:
        raise ValueError(f"{FN}: variable {name!r}{where(layer)} has no {STEP!r} dim; its dims "
                         f"are {list(da.dims)}")
    if TEST in da.dims:
        da = da.sel({TEST: test}, drop=True)
    return da.assign_coords({STEP: step_labels(da)}).reset_coords(drop=True)


def _stack(rows: dict[str, xr.DataArray], fill: object) -> xr.DataArray:
    """One (layer, step) array: the layers' rows outer-joined on step labels."""
    return xr.concat(list(rows.values()), dim=pd.Index(list(rows), name=LAYER), join="outer",
                     fill_value=fill).transpose(LAYER, STEP)


def _norm(values: np.ndarray, pvalue: bool) -> tuple[np.ndarray, Normalize, str]:
    """The array to draw, its norm and colormap: log for p-values, centred for signed data."""
    finite = values[np.isfinite(values)]
    if pvalue:
        positive = finite[finite > 0]
        floor = min(positive.min(), ZERO_PVALUE) if positive.size else ZERO_PVALUE
        top = max(1.0, finite.max()) if finite.size else 1.0
        return np.where(values <= 0, floor, values), LogNorm(floor, top), "viridis"
    if finite.size and finite.min() < 0 < finite.max():
        return values, CenteredNorm(0.0), "RdBu_r"
    return values, Normalize(), "viridis"


def normality_heatmap(results: xr.Dataset | Mapping[str, xr.Dataset],
                      var: str = "ks_distance", *, test: Hashable | None = None,
                      reduce: str = "median", fdr: float | None = 0.05,
                      title: str | None = None) -> Figure:
    """One normality statistic per layer and step, as a heatmap; FDR-significant cells dotted.

    Parameters
    ----------
    results : mapping {{layer: Dataset}} or Dataset
        ``ts.normality`` results with a ``step`` dim (maybe ``channel``), one
        per layer; or one Dataset with a ``layer`` dim. Layers' steps may
        differ: steps are outer-joined, and cells a layer lacks are blank.
    var : str
        An effect size (``ks_distance``, ``skew``, ``kurtosis``), the test
        ``statistic``, or ``pvalue`` / ``pvalue_fdr`` (drawn on a log colour
        scale; a p-value of exactly 0, an underflow, is drawn at 1e-16 or the
        smallest positive one if lower, and the axes title says so).
        Signed values get a diverging colormap centred on 0.
    test : str, optional
        The test, for variables with a ``test`` dim; default the first.
    {reduce}
        Every dim but ``step`` is reduced.
    fdr : float or None
        Dot the cells where any group (channel) has ``pvalue_fdr`` (of the
        same test) below ``fdr``. ``None`` draws no dots (and does not need
        ``pvalue_fdr``).
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        The heatmap axes (a ``QuadMesh``, rows = layers top to bottom,
        columns = steps; NaN cells left blank) and its colorbar, labelled
        with ``var`` (and the test); the axes title says what was reduced
        and what the dots mean. The dots are one scatter collection at
        (step column, layer row). The drawn values and marks are kept on the axes as
        ``ax.tensorstats_values`` and ``ax.tensorstats_significant``
        (DataArrays over ``layer`` and ``step``).

    Examples
    --------
    >>> import numpy as np, xarray as xr, tensorstats as ts
    >>> from tensorstats.plot import normality_heatmap
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(3, 2, 200))
    >>> res = {{"fc1": ts.normality(xr.DataArray(x, dims=("step", "channel", "sample"))),
    ...        "fc2": ts.normality(xr.DataArray(np.exp(x), dims=("step", "channel", "sample")))}}
    >>> fig = normality_heatmap(res, "ks_distance")
    >>> ax = fig.axes[0]
    >>> [t.get_text() for t in ax.get_yticklabels()], int(ax.tensorstats_significant.sum())
    (['fc1', 'fc2'], 3)
    """
    if not isinstance(var, str):
        raise TypeError(f"{FN}: var must be a variable name, got {var!r}")
    reduce = check_choice(FN, "reduce", reduce, tuple(REDUCERS))
    if fdr is not None and (isinstance(fdr, bool) or not isinstance(fdr, (int, float))
                            or not 0 < fdr < 1):
        raise ValueError(f"{FN}: fdr must be a number in (0, 1) or None, got {fdr!r}")
    title = check_title(FN, title)
    layers = _layers(results)
    if fdr is not None:
        for layer, ds in layers.items():
            if FDR_VAR not in ds.data_vars:
                raise ValueError(f"{FN}: marking significance needs variable {FDR_VAR!r}, not "
                                 f"in the results{where(layer)}; variables: "
                                 f"{sorted(map(str, ds.data_vars))}; pass fdr=None to draw "
                                 f"without marks")
    names = [var] if fdr is None else [var, FDR_VAR]
    test = _pick_test(layers, names, test)
    lazy = {layer: [_select(ds, layer, n, test) for n in names] for layer, ds in layers.items()}
    loaded = dict(zip(lazy, compute(*lazy.values()), strict=True))

    values = _stack({layer: reduce_over(arrays[0], [d for d in arrays[0].dims if d != STEP],
                                        reduce)
                     for layer, arrays in loaded.items()}, np.nan)
    significant = None
    if fdr is not None:
        significant = _stack({layer: (arrays[1] < fdr).any([d for d in arrays[1].dims
                                                            if d != STEP])
                              for layer, arrays in loaded.items()}, False)
        significant = significant.reindex_like(values, fill_value=False)

    n_layers, n_steps = values.shape
    fig, axes = new_figure(1, 1, width=min(max(6.0, 2.5 + 0.3 * n_steps), 14.0),
                           height=min(max(2.6, 1.4 + 0.4 * n_layers), 12.0))
    ax = axes[0, 0]
    drawn, norm, cmap = _norm(np.asarray(values.values, dtype=float), "pvalue" in var)
    mesh = ax.pcolormesh(np.arange(n_steps + 1) - 0.5, np.arange(n_layers + 1) - 0.5,
                         np.ma.masked_invalid(drawn), cmap=cmap, norm=norm, shading="flat")
    fig.colorbar(mesh, ax=ax, label=var + (f" [{test}]" if TEST in _dims(layers, var) else ""))
    notes = []
    reduced = sorted({str(d) for arrays in loaded.values() for d in arrays[0].dims if d != STEP})
    if reduced:
        notes.append(f"{reduce} over {', '.join(reduced)}")
    if "pvalue" in var and np.any(values.values == 0):
        notes.append(f"0 drawn at {norm.vmin:.0e}")
    if significant is not None:
        rows, cols = np.nonzero(significant.values)
        ax.scatter(cols, rows, s=14, c="white", marker="o", edgecolors="black", linewidths=0.6,
                   label=f"{FDR_VAR} < {fdr}")
        notes.append(f"dots: {FDR_VAR}" + (f" ({test})" if test is not None else "")
                     + f" < {fdr} in any {', '.join(reduced) or 'group'}")
    ax.set_title("; ".join(notes), fontsize="small")
    ax.set_yticks(np.arange(n_layers), [str(v) for v in values[LAYER].values])
    ax.set_ylim(n_layers - 0.5, -0.5)  # first layer on top
    ticks = thin_ticks(n_steps)
    steps = values[STEP].values
    ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
    ax.set_xlim(-0.5, n_steps - 0.5)
    ax.set_xlabel(STEP)
    ax.tensorstats_values = values
    ax.tensorstats_significant = significant
    return finish(fig, title)


def _dims(layers: dict[str, xr.Dataset], var: str) -> set:
    return {d for ds in layers.values() for d in ds[var].dims}


normality_heatmap.__doc__ = normality_heatmap.__doc__.format(reduce=REDUCE_DOC)

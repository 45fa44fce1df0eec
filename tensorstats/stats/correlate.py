"""``ts.correlate`` and ``ts.granger``: do statistics of tensors track the loss?"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import xarray as xr

from ..dims import LAG, STEP
from ..kernels import correlation as kernel
from .groups import check_input, is_dask
from .multitest import fdr_over_groups

ALIGNS = ("exact", "mean")

_ALIGN_DOC = """Both are aligned by label on ``dim`` (and on any other dim they share, such
        as ``run``; inner join). ``align="exact"`` keeps the labels
        present in both (an inner join). ``align="mean"`` first replaces ``y`` by its
        mean over each interval that ends at one of ``x``'s labels: the value at
        ``x``'s label t_k is the mean of ``y`` over (t_(k-1), t_k] -- e.g. the
        mean loss of the ten steps up to each step at which moments were logged
        -- and over every earlier label for the first one."""


def _interval_mean(y: xr.DataArray, dim: Hashable, labels: np.ndarray) -> xr.DataArray:
    for name, values in (("x", labels), ("y", y.indexes[dim] if dim in y.indexes else None)):
        if values is None or not np.issubdtype(np.asarray(values).dtype, np.number):
            raise ValueError(f"align='mean' needs numeric labels on {dim!r} in {name}; "
                             "use align='exact'")
    edges = np.concatenate([[-np.inf], np.asarray(labels, dtype=np.float64)])
    binned = y.groupby_bins(dim, bins=edges, right=True).mean()
    binned = binned.rename({f"{dim}_bins": dim}).assign_coords({dim: labels})
    return binned


def _align(x: xr.DataArray, y: xr.DataArray, dim: Hashable, align: str
           ) -> tuple[xr.DataArray, xr.DataArray]:
    for name, a in (("x", x), ("y", y)):
        check_input(a, name)
        if dim not in a.dims:
            raise ValueError(f"{name} has no dim {dim!r}; its dims are {list(a.dims)}")
    if align not in ALIGNS:
        raise ValueError(f"align must be one of {ALIGNS}, got {align!r}")
    if align == "mean":
        y = _interval_mean(y, dim, x.indexes[dim].values)
    shared = set(x.dims) & set(y.dims)  # dim, and e.g. run: aligned by label
    x, y = xr.align(x, y, join="inner", exclude=[d for d in (*x.dims, *y.dims) if d not in shared])
    if x.sizes[dim] == 0:
        raise ValueError(f"x and y share no label on {dim!r}; try align='mean'")
    if is_dask(x) or is_dask(y):
        x = x.chunk({dim: -1})
        y = y.chunk({dim: -1})
    return x, y


def _times(x: xr.DataArray, dim: Hashable) -> np.ndarray:
    labels = x.indexes[dim] if dim in x.indexes else None
    if labels is not None and np.issubdtype(labels.dtype, np.number):
        return np.asarray(labels, dtype=np.float64)
    return np.arange(x.sizes[dim], dtype=np.float64)


def _correlate_apply(x: np.ndarray, y: np.ndarray, *, method: str, detrend: str | None,
                     t: np.ndarray, lags: np.ndarray) -> tuple:
    x = kernel.detrend(x, detrend, t)
    y = kernel.detrend(y, detrend, t)
    return kernel.lagged_correlation(x, y, lags, method)


def correlate(x: xr.DataArray, y: xr.DataArray, *, dim: Hashable = STEP,
              method: str = "spearman", detrend: str | None = None, max_lag: int = 0,
              align: str = "exact") -> xr.Dataset:
    """Correlation of every series in ``x`` with ``y`` along ``dim``, at lags.

    ``x`` may carry any other dims (layer, channel, moment, run, ...): each
    series along ``dim`` is correlated with ``y`` (usually the loss, which may
    carry dims that broadcast against ``x``'s).

    Parameters
    ----------
    x, y : xarray.DataArray
        {align}
    dim : str
        The time dim, ``"step"`` by default.
    method : {{"pearson", "spearman", "kendall"}}
        As :func:`scipy.stats.pearsonr`, :func:`~scipy.stats.spearmanr` and
        :func:`~scipy.stats.kendalltau` (tau-b), two-sided.
    detrend : {{None, "difference", "linear"}}
        Applied to both series after alignment. Two series that both trend
        correlate strongly whether or not they are related; ``"difference"``
        correlates their step-to-step changes, ``"linear"`` their residuals
        from a straight line in the step labels. See ``docs/shift_correlation.md``.
    max_lag : int
        Lags ``-max_lag..max_lag`` in positions along the aligned ``dim``:
        lag k pairs ``x`` at position t with ``y`` at position t + k, so a
        positive lag tests whether ``x`` leads ``y``. With steps logged every
        10, lag 1 is 10 steps.
    align : {{"exact", "mean"}}
        How ``y`` is brought to ``x``'s labels (see above).

    Returns
    -------
    xarray.Dataset
        ``r``, ``pvalue``, ``pvalue_fdr`` (Benjamini-Hochberg over all series
        and lags together) and ``n`` (pairs used), with a leading ``lag``
        dim and ``x``'s other dims. Pairs with a non-finite side are left out;
        series with fewer than 3 pairs, or constant, give NaN. Lazy when an
        input is.

    Examples
    --------
    >>> import numpy as np, xarray as xr, tensorstats as ts
    >>> steps = np.arange(0, 200, 10)
    >>> rng = np.random.default_rng(0)
    >>> loss = xr.DataArray(rng.normal(size=20).cumsum(), dims="step", coords={{"step": steps}})
    >>> var = xr.DataArray(rng.normal(size=(3, 20)).cumsum(-1), dims=("channel", "step"),
    ...                    coords={{"step": steps}})
    >>> res = ts.correlate(var, loss, detrend="difference", max_lag=2)
    >>> res["r"].dims, res["lag"].values.tolist()
    (('lag', 'channel'), [-2, -1, 0, 1, 2])
    """
    if method not in kernel.METHODS:
        raise ValueError(f"method must be one of {kernel.METHODS}, got {method!r}")
    if detrend not in kernel.DETRENDS:
        raise ValueError(f"detrend must be one of {kernel.DETRENDS}, got {detrend!r}")
    if not isinstance(max_lag, (int, np.integer)) or max_lag < 0:
        raise ValueError(f"max_lag must be an int >= 0, got {max_lag!r}")
    x, y = _align(x, y, dim, align)
    lags = np.arange(-int(max_lag), int(max_lag) + 1)
    r, p, n = xr.apply_ufunc(
        _correlate_apply, x, y, input_core_dims=[[dim], [dim]],
        output_core_dims=[[LAG], [LAG], [LAG]],
        kwargs={"method": method, "detrend": detrend, "t": _times(x, dim), "lags": lags},
        dask="parallelized", output_dtypes=[np.float64, np.float64, np.int64],
        dask_gufunc_kwargs={"output_sizes": {LAG: len(lags)}})
    ds = xr.Dataset({"r": r, "pvalue": p, "n": n}).assign_coords({LAG: lags})
    ds = ds.transpose(LAG, ...)
    ds["pvalue_fdr"] = fdr_over_groups(ds["pvalue"], list(ds["pvalue"].dims))
    ds = ds[["r", "pvalue", "pvalue_fdr", "n"]]
    ds.attrs.update({"method": method, "detrend": str(detrend), "align": align})
    return ds


def _granger_apply(x: np.ndarray, y: np.ndarray, *, detrend: str | None, t: np.ndarray,
                   max_lag: int) -> tuple:
    return kernel.granger(kernel.detrend(x, detrend, t), kernel.detrend(y, detrend, t),
                          max_lag)


def granger(x: xr.DataArray, y: xr.DataArray, *, dim: Hashable = STEP, max_lag: int = 1,
            detrend: str | None = None, align: str = "exact") -> xr.Dataset:
    """Granger causality of ``y`` by each series of ``x``, at lags 1..``max_lag``.

    Tests whether the past of ``x`` improves the prediction of ``y`` beyond
    ``y``'s own past (F test on the sum of squared residuals, via
    :func:`statsmodels.tsa.stattools.grangercausalitytests`). Granger
    causality is predictability, not causation; both series should be
    stationary, so difference trending series first (``detrend="difference"``).

    Parameters
    ----------
    x, y : xarray.DataArray
        {align}
    dim : str
        The time dim.
    max_lag : int
        Largest lag (in positions along the aligned ``dim``), at least 1.
    detrend : {{None, "difference", "linear"}}
        As in :func:`correlate`.
    align : {{"exact", "mean"}}
        As in :func:`correlate`.

    Returns
    -------
    xarray.Dataset
        ``statistic`` (F), ``pvalue``, ``pvalue_fdr`` (Benjamini-Hochberg over
        all series and lags) and ``n`` (values used), with a leading ``lag``
        dim (1..max_lag). Series with a gap inside or too short give NaN.

    Examples
    --------
    >>> import numpy as np, xarray as xr, tensorstats as ts
    >>> rng = np.random.default_rng(1)
    >>> lead = rng.normal(size=120)
    >>> loss = xr.DataArray(np.r_[0.0, lead[:-1]] + 0.3 * rng.normal(size=120), dims="step")
    >>> g = ts.granger(xr.DataArray(lead, dims="step"), loss, max_lag=2)
    >>> bool(g["pvalue"].sel(lag=1) < 1e-6)
    True
    """
    if not isinstance(max_lag, (int, np.integer)) or max_lag < 1:
        raise ValueError(f"max_lag must be an int >= 1, got {max_lag!r}")
    if detrend not in kernel.DETRENDS:
        raise ValueError(f"detrend must be one of {kernel.DETRENDS}, got {detrend!r}")
    x, y = _align(x, y, dim, align)
    stat, p, n = xr.apply_ufunc(
        _granger_apply, x, y, input_core_dims=[[dim], [dim]],
        output_core_dims=[[LAG], [LAG], [LAG]],
        kwargs={"detrend": detrend, "t": _times(x, dim), "max_lag": int(max_lag)},
        dask="parallelized", output_dtypes=[np.float64, np.float64, np.int64],
        dask_gufunc_kwargs={"output_sizes": {LAG: int(max_lag)}})
    ds = xr.Dataset({"statistic": stat, "pvalue": p, "n": n})
    ds = ds.assign_coords({LAG: np.arange(1, int(max_lag) + 1)}).transpose(LAG, ...)
    ds["pvalue_fdr"] = fdr_over_groups(ds["pvalue"], list(ds["pvalue"].dims))
    ds = ds[["statistic", "pvalue", "pvalue_fdr", "n"]]
    ds.attrs.update({"test": "ssr_ftest", "detrend": str(detrend), "align": align})
    return ds


correlate.__doc__ = correlate.__doc__.format(align=_ALIGN_DOC)
granger.__doc__ = granger.__doc__.format(align=_ALIGN_DOC)

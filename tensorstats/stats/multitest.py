"""Multiple-testing correction of p-values (xarray wrappers of ``kernels.fdr``).

:func:`fdr` is the public Benjamini-Hochberg over any DataArray of p-values;
:func:`fdr_over_groups` is the one ``normality`` and ``correlate`` use inside.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from ..kernels.fdr import bh_adjust
from .groups import dim_list, is_dask


def fdr_last_axes(p: np.ndarray, ngroup_axes: int) -> np.ndarray:
    """BH over the last ``ngroup_axes`` axes of ``p`` taken together."""
    lead = p.shape[:p.ndim - ngroup_axes]
    return bh_adjust(p.reshape((*lead, math.prod(p.shape[len(lead):])))).reshape(p.shape)


def _check_range(p: np.ndarray) -> np.ndarray:
    bad = np.isfinite(p) & ((p < 0) | (p > 1)) | np.isinf(p)
    if bad.any():
        raise ValueError(f"ts.fdr: p-values must lie in [0, 1] (or be NaN); got "
                         f"{p[bad].ravel()[0]!r} among {int(bad.sum())} bad value(s)")
    return p


def fdr(pvalues: xr.DataArray, *, dim: Hashable | Sequence[Hashable] | None = None
        ) -> xr.DataArray:
    """Benjamini-Hochberg adjusted p-values over ``dim`` (default: all dims).

    Each combination of the other dims is its own family of tests. NaN
    p-values (degenerate groups) are left out: they are not counted in the
    number of tests and stay NaN. Equal to statsmodels'
    ``multipletests(p, method="fdr_bh")[1]`` on the non-NaN values of each
    family. Lazy when ``pvalues`` is; a p-value outside [0, 1] raises
    ``ValueError`` (when the result is computed, for lazy input).

    Parameters
    ----------
    pvalues
        Any DataArray of p-values, such as ``ts.normality(...)["pvalue"]``.
    dim
        The dim or dims whose entries form one family; ``None`` pools all.

    Returns
    -------
    xr.DataArray
        float64, same dims, coords and shape, named ``pvalue_fdr``.

    Examples
    --------
    >>> import numpy as np, xarray as xr, tensorstats as ts
    >>> p = xr.DataArray([[0.01, 0.04, np.nan, 0.03], [0.5, 0.2, 0.01, 0.9]],
    ...                  dims=("test", "channel"))
    >>> ts.fdr(p, dim="channel").round(4).values.tolist()
    [[0.03, 0.04, nan, 0.04], [0.6667, 0.4, 0.04, 0.9]]
    """
    if not isinstance(pvalues, xr.DataArray):
        raise TypeError(f"ts.fdr needs an xr.DataArray of p-values, got "
                        f"{type(pvalues).__name__}")
    dims = list(pvalues.dims) if dim is None else dim_list(dim)
    missing = [d for d in dims if d not in pvalues.dims]
    if missing:
        raise ValueError(f"ts.fdr: dim {missing} not in the p-values' dims {pvalues.dims}")
    if not np.issubdtype(pvalues.dtype, np.floating):
        raise TypeError(f"ts.fdr: p-values must be floating point, got dtype {pvalues.dtype}")
    checked = xr.apply_ufunc(_check_range, pvalues, dask="parallelized",
                             output_dtypes=[pvalues.dtype])
    out = fdr_over_groups(checked, dims).astype(np.float64)
    return out.transpose(*pvalues.dims).rename("pvalue_fdr")


def fdr_over_groups(pvalue: xr.DataArray, group_dims: Sequence) -> xr.DataArray:
    """Benjamini-Hochberg adjusted ``pvalue`` over all groups (``group_dims``) together.

    Every other dim (such as ``test``) gets its own family. NaN p-values are
    not counted. Lazy when ``pvalue`` is.
    """
    group_dims = list(group_dims)
    if pvalue.size == 0:
        return pvalue.astype(np.float64)
    if is_dask(pvalue) and group_dims:
        pvalue = pvalue.chunk({d: -1 for d in group_dims})
    return xr.apply_ufunc(fdr_last_axes, pvalue, input_core_dims=[group_dims],
                          output_core_dims=[group_dims], kwargs={"ngroup_axes": len(group_dims)},
                          dask="parallelized", output_dtypes=[np.float64])

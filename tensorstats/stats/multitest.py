"""Multiple-testing correction of a result's p-values over its groups (xarray wrapper)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import xarray as xr

from .groups import is_dask
from .kernels.fdr import bh_adjust


def _fdr(p: np.ndarray, ngroup_axes: int) -> np.ndarray:
    """BH over the last ``ngroup_axes`` axes of ``p`` taken together."""
    lead = p.shape[:p.ndim - ngroup_axes]
    return bh_adjust(p.reshape((*lead, math.prod(p.shape[len(lead):])))).reshape(p.shape)


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
    return xr.apply_ufunc(_fdr, pvalue, input_core_dims=[group_dims],
                          output_core_dims=[group_dims], kwargs={"ngroup_axes": len(group_dims)},
                          dask="parallelized", output_dtypes=[np.float64])

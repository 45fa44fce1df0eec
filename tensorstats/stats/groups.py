"""How analyses form groups: ``by`` names the dims to keep, every other dim is pooled.

The text of the shared ``by`` parameter lives here once (:data:`BY_DOC`), and so
does the one way an analysis turns a DataArray into groups on a core dim.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
import xarray as xr

from ..dims import DEFAULT_BY, POOLED
from ..kernels.subsample import label_keys

By = Hashable | Sequence[Hashable] | None
"""Type of the ``by`` argument: one dim, several, or None for the default."""

BY_DOC = """by : str or sequence of str, optional
        Dims to keep: one result per combination of their labels. Every other
        dim is pooled into one sample per group. The default keeps whichever
        of ``run``, ``step`` and ``channel`` the input has, so a group is one
        channel at one step (of one run); ``by=()`` pools everything."""


def is_dask(da: xr.DataArray) -> bool:
    """Whether ``da`` is backed by a dask array (without importing dask)."""
    return hasattr(da.data, "dask") and hasattr(da.data, "chunks")


def check_input(da: object, name: str = "da") -> xr.DataArray:
    """``da`` if it is a DataArray of real numbers (bool, int or float), else TypeError.

    Examples
    --------
    >>> check_input(np.zeros(3))
    Traceback (most recent call last):
    TypeError: da must be an xarray.DataArray, got ndarray
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"{name} must be an xarray.DataArray, got {type(da).__name__}")
    if da.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers (bool, int or float), got dtype "
                        f"{da.dtype}" + (f" ({da.name!r})" if da.name is not None else ""))
    return da


def dim_list(dims: Hashable | Sequence[Hashable]) -> list[Hashable]:
    """One dim name or a sequence of them, as a list (a string is one name)."""
    if isinstance(dims, str) or not isinstance(dims, Sequence):
        return [dims]
    return list(dims)


def resolve_by(da: xr.DataArray, by: By) -> tuple[tuple[Hashable, ...], tuple[Hashable, ...]]:
    """Split ``da.dims`` into (kept, pooled), both in ``da``'s order.

    Examples
    --------
    >>> da = xr.DataArray(np.zeros((2, 3, 4)), dims=("step", "channel", "dim_1"))
    >>> resolve_by(da, None)
    (('step', 'channel'), ('dim_1',))
    >>> resolve_by(da, "channel")
    (('channel',), ('step', 'dim_1'))
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray, got {type(da).__name__}")
    if by is None:
        wanted = [d for d in DEFAULT_BY if d in da.dims]
    else:
        wanted = dim_list(by)
    missing = [d for d in wanted if d not in da.dims]
    if missing:
        raise ValueError(f"by names {missing} but the input has dims {list(da.dims)}")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"by lists a dim twice: {wanted}")
    kept = tuple(d for d in da.dims if d in wanted)
    pooled = tuple(d for d in da.dims if d not in wanted)
    return kept, pooled


def kept_coords(da: xr.DataArray, kept: Sequence[Hashable]) -> dict:
    """The coordinates of ``da`` that live only on kept dims."""
    return {k: v for k, v in da.coords.items() if set(v.dims) <= set(kept)}


def labels(da: xr.DataArray, kept: Sequence[Hashable]) -> list[np.ndarray]:
    """Each kept dim's labels: its index coordinate, else positions."""
    out = []
    for d in kept:
        if d in da.indexes:
            out.append(np.asarray(da.indexes[d]))
        else:
            out.append(np.arange(da.sizes[d]))
    return out


def pool(da: xr.DataArray, kept: Sequence[Hashable], pooled: Sequence[Hashable]) -> xr.DataArray:
    """``da`` with its kept dims first and pooled dims stacked into :data:`POOLED`.

    Coordinates on pooled dims are dropped (no index is built). A dask-backed
    input whose pooled dims span several chunks is rechunked so that each group
    lies in one chunk, with dask choosing how many groups share a chunk.
    """
    da = da.drop_vars([k for k, v in da.coords.items() if set(v.dims) & set(pooled)])
    da = da.transpose(*kept, *pooled)
    if is_dask(da) and any(len(da.chunksizes[d]) > 1 for d in pooled):
        da = da.chunk({**{d: -1 for d in pooled}, **{d: "auto" for d in kept}})
    kept_shape = tuple(da.sizes[d] for d in kept)
    size = math.prod(da.sizes[d] for d in pooled)  # (xarray's stack fails on empty arrays)
    return xr.DataArray(da.data.reshape((*kept_shape, size)), dims=(*kept, POOLED),
                        coords=kept_coords(da, kept), name=da.name, attrs=da.attrs)


def subsample_keys(da: xr.DataArray, kept: Sequence[Hashable], groups: xr.DataArray,
                   seed: int, needed: bool) -> xr.DataArray:
    """One subsampling key per group (uint64 over the kept dims), chunked like ``groups``.

    Keys come from ``seed`` and each group's labels on the kept dims
    (:func:`~tensorstats.kernels.subsample.label_keys`), so a group is
    subsampled the same way whatever the chunking; zeros when no group needs
    subsampling (``needed`` false).
    """
    values = label_keys(seed, labels(da, kept)) if needed else np.zeros((), np.uint64)
    keys = xr.DataArray(np.broadcast_to(values, tuple(groups.sizes[d] for d in kept)), dims=kept)
    if is_dask(groups):
        keys = keys.chunk(dict(zip(kept, groups.chunks[:len(kept)], strict=True)))
    return keys

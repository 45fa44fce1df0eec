"""``ts.moments``: count, mean, variance, skewness, kurtosis, min and max per group."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ..dims import MOMENT
from ..kernels.moments import (
    COUNT_FIELDS,
    PARTIAL_FIELDS,
    RESULT_FIELDS,
    finish_moments,
    merge_moments,
    partial_moments,
)
from .groups import BY_DOC, By, check_input, is_dask, kept_coords, resolve_by

# One record type for partials and results (dask casts a chunk's output to the
# reduction's dtype), with the fields of both.
MOMENTS_DTYPE = np.dtype([(f, np.int64 if f in COUNT_FIELDS else np.float64)
                          for f in dict.fromkeys(PARTIAL_FIELDS + RESULT_FIELDS)])
PARTIAL_DTYPE = RESULT_DTYPE = MOMENTS_DTYPE


def _pack(fields: dict, dtype: np.dtype) -> np.ndarray:
    first = np.asarray(fields["count"])
    out = np.zeros(first.shape, dtype)
    for name, value in fields.items():
        out[name] = value
    return out


def _unpack(arr: np.ndarray) -> dict:
    return {name: arr[name] for name in PARTIAL_FIELDS}


def _flatten_pooled(x: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """Move ``axis`` to the end and flatten them into one (kept axes stay first)."""
    kept = [i for i in range(x.ndim) if i not in axis]
    x = np.transpose(x, kept + list(axis))
    return x.reshape((*x.shape[:len(kept)], math.prod(x.shape[len(kept):])))


def _chunk(x: np.ndarray, axis: tuple[int, ...], keepdims: bool = True, **_: object) -> np.ndarray:
    part = partial_moments(x, axis=axis)  # reads the pooled axes where they lie
    packed = _pack(part, PARTIAL_DTYPE)
    return packed.reshape(packed.shape + (1,) * len(axis))  # kept axes first, then axis


def _merge(x: np.ndarray, axis: tuple[int, ...]) -> dict:
    flat = _flatten_pooled(x, axis)
    return merge_moments(_unpack(flat), axis=-1)


def _combine(x: np.ndarray, axis: tuple[int, ...], keepdims: bool = True,
             **_: object) -> np.ndarray:
    packed = _pack(_merge(x, axis), PARTIAL_DTYPE)
    return packed.reshape(packed.shape + (1,) * len(axis))


def _aggregate(x: np.ndarray, axis: tuple[int, ...], keepdims: bool = False,
               **_: object) -> np.ndarray:
    return _pack(finish_moments(_merge(x, axis)), RESULT_DTYPE)


RESULT_CHUNK_BYTES = 64 * 2**20
"""Dask chunks of the result records are merged up to about this size before
the fields are split: a result is much smaller than its input, and each field
costs a task per result chunk (for 4 MiB input chunks, 50 chunks, the call
took 3.8x the read with one result chunk per input chunk, 2.3x merged)."""


def _split_fields(res):
    """One dask array per field of the record array ``res``, a task per chunk each.

    The tasks are written as one plain graph layer per field instead of
    ``res[name]`` (a blockwise layer each, which dask builds and optimizes
    at every compute: 10 ms of a 75 ms call over 200 MiB in 4 chunks).
    """
    import operator

    import dask.array as dsa
    from dask.core import flatten
    from dask.highlevelgraph import HighLevelGraph

    keys = list(flatten(res.__dask_keys__()))
    out = {}
    for field in RESULT_FIELDS:
        name = f"{res.name}-{field}"
        layer = {(name, *key[1:]): (operator.getitem, key, field) for key in keys}
        graph = HighLevelGraph.from_collections(name, layer, dependencies=[res])
        out[field] = dsa.Array(graph, name, res.chunks,
                               meta=np.empty((0,) * res.ndim, RESULT_DTYPE[field]))
    return out


def _check_ddof(ddof: object) -> int:
    if isinstance(ddof, bool) or not isinstance(ddof, (int, np.integer)) or ddof < 0:
        raise ValueError(f"ts.moments: ddof must be a non-negative int, got {ddof!r}")
    return int(ddof)


def _with_ddof(ds: xr.Dataset, ddof: int) -> xr.Dataset:
    """``var`` divided by ``count - ddof`` instead of ``count`` (NaN where not positive)."""
    if ddof:
        count = ds["count"]
        # (var * count) is the centred sum of squares, exact as it was summed
        ds["var"] = ds["var"] * count / (count - ddof).where(count > ddof)
        ds["std"] = np.sqrt(ds["var"])
    ds["var"].attrs["ddof"] = ddof
    ds["std"].attrs["ddof"] = ddof
    return ds


def moments(da: xr.DataArray, *, by: By = None, ddof: int = 0) -> xr.Dataset:
    """Count, mean, variance, skewness, excess kurtosis, min and max of each group.

    Statistics are over the finite values of each group; ``nan_count`` and
    ``inf_count`` say how many values were left out. Accumulation is centred
    and in float64, and chunks merge exactly (Chan et al.; Pébay), so a dask
    input of any size streams through as a tree reduction and the result does
    not depend on how it is chunked.

    Parameters
    ----------
    da : xarray.DataArray
        Any real dtype, NumPy- or dask-backed. A DataArray with a ``moment``
        dim -- the exact moments a subsampled series stores,
        ``run.moments(kind, layer)`` -- is merged over the pooled dims instead,
        so ``ts.moments(run.moments("feature", "conv1"))`` gives the moments
        of the full tensors, not of the sample.
    {by}
    ddof : int, default 0
        Delta degrees of freedom of ``var`` and ``std``: the sum of squared
        deviations is divided by ``count - ddof``. ``ddof=1`` gives the
        sample variance of certified reference values (NIST StRD) and of
        :func:`numpy.var` with ``ddof=1``; groups with ``count <= ddof`` give
        NaN. ``skew`` and ``kurtosis`` are unaffected.

    Returns
    -------
    xarray.Dataset
        Over the kept dims: ``count`` (finite values), ``nan_count``,
        ``inf_count`` (int64); ``mean``, ``var`` (divided by ``count - ddof``),
        ``std``, ``skew`` (biased g1, as :func:`scipy.stats.skew`),
        ``kurtosis`` (excess, biased g2, as :func:`scipy.stats.kurtosis`),
        ``min``, ``max`` (float64). Lazy when ``da`` is. Groups without a
        finite value give NaN; ``skew`` and ``kurtosis`` are NaN below 3
        values or at zero variance.

    Examples
    --------
    >>> import numpy as np, xarray as xr, tensorstats as ts
    >>> x = np.arange(24.0).reshape(2, 3, 4)
    >>> da = xr.DataArray(x, dims=("step", "channel", "dim_1"), coords={{"step": [0, 10]}})
    >>> m = ts.moments(da)
    >>> m["mean"].dims, float(m["mean"].sel(step=10, channel=2)), float(m["var"][0, 0])
    (('step', 'channel'), 21.5, 1.25)
    >>> float(ts.moments(da, by="step")["max"].sel(step=0))
    11.0
    >>> float(ts.moments(da, ddof=1)["var"][0, 0])  # as np.var(x[0, 0], ddof=1)
    1.6666666666666667
    """
    check_input(da)
    ddof = _check_ddof(ddof)
    if MOMENT in da.dims:
        return _with_ddof(_from_stored(da, by), ddof)
    kept, pooled = resolve_by(da, by)
    arr = da.transpose(*kept, *pooled)
    axis = tuple(range(len(kept), arr.ndim))
    data = arr.data
    if is_dask(arr):
        import dask.array as dsa

        res = dsa.reduction(
            data, chunk=_chunk, combine=_combine, aggregate=_aggregate, axis=axis,
            keepdims=False, dtype=RESULT_DTYPE, concatenate=True,
            meta=np.empty((0,) * len(kept), RESULT_DTYPE), name="tensorstats-moments")
        fields = _split_fields(res.rechunk("auto", block_size_limit=RESULT_CHUNK_BYTES))
    else:
        # the compiled kernel releases the GIL: large inputs use every core
        fields = finish_moments(partial_moments(np.asarray(data), axis=axis, threads=None))
    ds = xr.Dataset({name: (kept, fields[name]) for name in RESULT_FIELDS},
                    coords=kept_coords(da, kept))
    ds["kurtosis"].attrs["definition"] = "excess (Fisher): normal is 0"
    return _with_ddof(ds, ddof)


def _merge_stored_n(values: np.ndarray, *, fields: tuple[str, ...], npooled: int) -> tuple:
    """Merge stored partials over the pooled axes and finish them.

    ``values`` has shape (kept..., pooled... [npooled axes], moment), the
    moment axis ordered as ``fields``.
    """
    kept_shape = values.shape[:values.ndim - 1 - npooled]
    flat = values.reshape((*kept_shape, -1, values.shape[-1]))
    part = {}
    for i, name in enumerate(fields):
        col = flat[..., i]
        part[name] = col.astype(np.int64) if name in COUNT_FIELDS else col
    res = finish_moments(merge_moments(part, axis=-1))
    return tuple(res[name] for name in RESULT_FIELDS)


def _from_stored(da: xr.DataArray, by: By) -> xr.Dataset:
    """``ts.moments`` of stored partial moments (a DataArray with a ``moment`` dim)."""
    names = tuple(str(v) for v in np.asarray(da[MOMENT].values)) if MOMENT in da.coords else ()
    if set(names) != set(PARTIAL_FIELDS):
        raise ValueError(f"a DataArray with a {MOMENT!r} dim must hold stored moments with "
                         f"coordinate {list(PARTIAL_FIELDS)}, got {list(names)}")
    template = da.isel({MOMENT: 0}, drop=True)
    kept, pooled = resolve_by(template, by)
    arr = da.transpose(*kept, *pooled, MOMENT)
    if is_dask(arr):
        arr = arr.chunk({d: -1 for d in (*pooled, MOMENT)})
    results = xr.apply_ufunc(
        _merge_stored_n, arr, input_core_dims=[[*pooled, MOMENT]],
        output_core_dims=[[] for _ in RESULT_FIELDS],
        kwargs={"fields": names, "npooled": len(pooled)}, dask="parallelized",
        output_dtypes=[np.int64 if f in COUNT_FIELDS else np.float64 for f in RESULT_FIELDS])
    ds = xr.Dataset(dict(zip(RESULT_FIELDS, results, strict=True)),
                    coords=kept_coords(template, kept))
    ds.attrs["source"] = "stored exact moments of the full tensors"
    return ds


moments.__doc__ = moments.__doc__.format(by=BY_DOC)

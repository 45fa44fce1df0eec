"""Streaming moments over the last axis: partials, an associative merge, a finish.

A *partial* is a dict of arrays describing the finite values of each group:
``count``, ``nan_count``, ``inf_count``, ``mean``, ``m2``, ``m3``, ``m4`` (sums
of centred powers about the group's own mean), ``min`` and ``max``. Partials of
disjoint pieces of a group merge exactly (up to rounding) with the pairwise
formulas of Chan et al. and Pébay, generalised to many pieces at once, so a
group larger than memory streams through chunk by chunk. Everything is float64
and centred; nothing ever forms E[x²] − E[x]².

This module never imports xarray or dask.

Examples
--------
>>> import numpy as np
>>> x = np.array([[1.0, 2.0, 3.0, 4.0, np.nan]])
>>> p = partial_moments(x)
>>> out = finish_moments(p)
>>> float(out["mean"][0]), float(out["var"][0]), int(out["nan_count"][0])
(2.5, 1.25, 1)
>>> halves = [partial_moments(x[:, :2]), partial_moments(x[:, 2:])]
>>> merged = merge_moments(halves)
>>> float(finish_moments(merged)["var"][0])
1.25
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .blocks import map_threads
from .scratch import scratch

PARTIAL_FIELDS = ("count", "nan_count", "inf_count", "mean", "m2", "m3", "m4", "min", "max")
"""Keys of a partial, in the order the collector stores them in a ``moments`` row:
defined here once, for the collector and the analyses."""

RESULT_FIELDS = ("count", "nan_count", "inf_count", "mean", "var", "std", "skew", "kurtosis",
                 "min", "max")
"""Variables :func:`finish_moments` returns, in the order ``ts.moments`` lists them."""

COUNT_FIELDS = ("count", "nan_count", "inf_count")

Partial = dict[str, np.ndarray]


RAW_SUMS_MAX_OFFSET = 10.0
"""Groups whose |mean - shift| is within this many standard deviations use power
sums about the shift directly; others are summed again about their mean.
Rounding then costs at most ~1e4 ulp in the fourth central moment."""




@lru_cache(maxsize=32)
def _ones(n: int) -> np.ndarray:
    out = np.ones(n)
    out.setflags(write=False)
    return out


SUMS_MAX_WIDTH = 1 << 13
"""Longest row piece handed to one BLAS call. OpenBLAS starts threads of its own
for longer vectors; with two dask threads each calling it, they oversubscribed
the cores: 29-38 ns per value instead of 1.7-2.0 for rows of 16K-1M values
(``benchmarks/scaling.py``, tensor-size axis)."""

SUMS_BLOCK_VALUES = 1 << 15
"""Values per piece of :func:`power_sums`: two float64 temporaries of 256 KiB
stay in a core's L2 cache, where each pass runs 2-3x faster than over 2 MiB
pieces on the development VM."""


def power_sums(x: np.ndarray, shift: np.ndarray | None = None, *, order: int = 4,
               weights: np.ndarray | None = None, extremes: bool = False,
               piece: int | None = None) -> dict[str, np.ndarray]:
    """Sums of powers of ``x - shift`` along each row, in float64 (NumPy and BLAS).

    The compiled kernels no longer use it; it is the independent NumPy path
    the fused normality kernel is tested against (``tests/test_normality_fused.py``).

    The rows are cast to float64 in L2-sized pieces (:data:`SUMS_BLOCK_VALUES`
    values by default) and reduced with BLAS matrix-vector and dot products while the piece is in
    cache; long rows are cut into pieces whose sums add up. The square of a
    float32 value is exact in float64. Non-finite values propagate.

    Parameters
    ----------
    x : ndarray, shape (g, n)
        Any real dtype.
    shift : ndarray, shape (g,), optional
        Subtracted from each row first (in float64).
    order : {2, 4}
        Highest power.
    weights : ndarray, shape (n, k), optional
        Also give the weighted sums ``y @ weights`` (Shapiro-Wilk's ``a @ y``).
    extremes : bool
        Also give each row's min and max of ``x``.
    piece : int, optional
        Values per piece (default :data:`SUMS_BLOCK_VALUES`).

    Returns
    -------
    dict of ndarray
        ``s1`` ... ``s<order>`` (g,) with ``y = x - shift``; ``weighted`` (g, k)
        with ``weights``; ``min`` and ``max`` with ``extremes``.

    Examples
    --------
    >>> s = power_sums(np.array([[1.0, 2.0], [0.5, -1.0]]))
    >>> [s[k].tolist() for k in ("s1", "s2", "s3", "s4")]
    [[3.0, -0.5], [5.0, 1.25], [9.0, -0.875], [17.0, 1.0625]]
    """
    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order}")
    g, n = x.shape
    k = 0 if weights is None else weights.shape[1]
    # one (g, 1 + k) array for the matrix-vector products: column 0 is Σy
    linear = np.zeros((g, 1 + k))
    powers = np.zeros((order - 1, g))  # Σy², then Σy³, Σy⁴
    lo, hi = np.full(g, np.inf), np.full(g, -np.inf)
    piece = SUMS_BLOCK_VALUES if piece is None else piece
    width = max(1, min(n, piece, SUMS_MAX_WIDTH))
    rows = max(1, piece // width)
    y_buf = scratch("power_sums.y", (rows, width), np.float64)
    y2_buf = scratch("power_sums.y2", (rows, width), np.float64) if order == 4 else None
    for c0 in range(0, n, width):
        c1 = min(c0 + width, n)
        matrix = _ones(c1 - c0)[:, None] if weights is None else np.column_stack(
            [_ones(c1 - c0), weights[c0:c1]])
        piece_out = np.empty((g, 1 + k)) if c0 else linear
        piece_powers = np.empty_like(powers) if c0 else powers
        for r0 in range(0, g, rows):
            r1 = min(r0 + rows, g)
            block = x[r0:r1, c0:c1]
            y = y_buf[:r1 - r0, :c1 - c0]
            y[...] = block
            if extremes:
                np.minimum(lo[r0:r1], block.min(axis=-1), out=lo[r0:r1])
                np.maximum(hi[r0:r1], block.max(axis=-1), out=hi[r0:r1])
            if shift is not None:
                y -= shift[r0:r1, None]
            np.matmul(y, matrix, out=piece_out[r0:r1])
            if order == 2:
                np.vecdot(y, y, out=piece_powers[0, r0:r1])
            else:
                y2 = np.multiply(y, y, out=y2_buf[:r1 - r0, :c1 - c0])
                np.matmul(y2, _ones(c1 - c0), out=piece_powers[0, r0:r1])
                np.vecdot(y, y2, out=piece_powers[1, r0:r1])
                np.vecdot(y2, y2, out=piece_powers[2, r0:r1])
        if c0:
            linear += piece_out
            powers += piece_powers
    out = {"s1": linear[:, 0], **{f"s{p + 2}": powers[p] for p in range(order - 1)}}
    if weights is not None:
        out["weighted"] = linear[:, 1:]
    if extremes:
        out["min"], out["max"] = lo, hi
    return out


def _from_power_sums(n: int | np.ndarray, s1, s2, s3, s4) -> tuple[np.ndarray, ...]:
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.divide(s1, n, out=np.zeros(np.shape(s1)), where=np.asarray(n) > 0)
    mu2 = mean * mean
    m2 = np.maximum(s2 - mean * s1, 0.0)
    m3 = s3 - 3.0 * mean * s2 + 2.0 * mu2 * s1
    m4 = s4 - 4.0 * mean * s3 + 6.0 * mu2 * s2 - 3.0 * mu2 * mean * s1
    return mean, m2, m3, np.maximum(m4, 0.0)


def _central(n: int | np.ndarray, sums: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """Mean and central sums m2-m4 from the power sums of :func:`power_sums`."""
    return _from_power_sums(n, sums["s1"], sums["s2"], sums["s3"], sums["s4"])


def _merged_dims(shape: tuple[int, ...], strides: tuple[int, ...]) -> list[tuple[int, int]]:
    """(size, stride) of ``shape``'s dims with size-1 dims dropped and adjacent
    dims merged where the strides allow (the outer stride is the inner's times
    its size)."""
    dims: list[tuple[int, int]] = []
    for n, s in zip(shape, strides, strict=True):
        if n == 1:
            continue
        if dims and dims[-1][1] == n * s:
            dims[-1] = (dims[-1][0] * n, s)
        else:
            dims.append((n, s))
    return dims


def _strided_layout(x: np.ndarray, nkept: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The compiled kernel's view of ``x``: groups on its first ``nkept`` axes.

    Returns ``(base, layout, groups)`` -- a 1-D array spanning ``x``'s memory,
    ``(G, O, I, sa, sg, so)`` in elements (each group's ``I`` innermost values
    contiguous), and the number of groups -- or
    None when the groups need more than two strided axes, or the values more
    than two, or the innermost values are not contiguous, or a stride is
    negative or not a whole number of elements.
    """
    plan = _layout_plan(x.shape, x.strides, x.dtype.itemsize, nkept)
    if plan is None:
        return None
    dims, span, groups = plan
    base = np.lib.stride_tricks.as_strided(x, shape=(span,), strides=(x.dtype.itemsize,))
    return base, np.array(dims, np.int64), groups


@lru_cache(maxsize=1024)
def _layout_plan(shape: tuple[int, ...], strides: tuple[int, ...], size: int, nkept: int
                 ) -> tuple[tuple[int, ...], int, int] | None:
    """:func:`_strided_layout` from the shape and strides alone (memoized: the
    capture path sees the same few layouts at every step): ``(layout, span,
    groups)``, ``span`` the elements from the first to the last value + 1."""
    if any(s < 0 or s % size for s in strides):
        return None
    elems = tuple(s // size for s in strides)
    kept = _merged_dims(shape[:nkept], elems[:nkept])
    pooled = _merged_dims(shape[nkept:], elems[nkept:])
    if len(kept) > 2 or len(pooled) > 2 or (pooled and pooled[-1][1] != 1):
        return None  # strided innermost values: a copy reads them faster than a gather
    (a, sa), (g, sg) = [(1, 0)] * (2 - len(kept)) + kept
    (o, so), (i, _) = [(1, 0)] * (2 - len(pooled)) + pooled  # innermost stride: 1
    span = 1 + sum((n - 1) * s for n, s in (kept + pooled))
    return (g, o, i, sa, sg, so), span, a * g


COMPILED_MIN_VALUES_PER_THREAD = 1 << 18
"""Below this many values per thread, one thread does all the groups."""


def _run_kernel(x: np.ndarray, nkept: int, threads: int | None
                ) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    """The kernel's raw output for the groups on ``x``'s first ``nkept`` axes:
    ``ints`` (count, NaN, Inf, min key, max key), ``floats`` (mean, m2-m4) and
    the dtype the keys are of."""
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32 if x.dtype == np.float16 else np.float64)
    lead = x.shape[:nkept]
    layout = _strided_layout(x, nkept)
    if layout is None:  # a layout the kernel cannot walk: one copy, groups as rows
        x = np.ascontiguousarray(x).reshape(math.prod(lead), -1)
        layout = _strided_layout(x, 1)
    base, dims, groups = layout
    return (*_run_partials(base, dims, groups, x.size, threads), base.dtype)


def _run_partials(base: np.ndarray, dims: np.ndarray, groups: int, size: int,
                  threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The compiled kernel over ``groups`` groups of ``base`` laid out as ``dims``
    (:func:`_strided_layout`), ``size`` values in all: ``(ints, floats)``."""
    from .moments_compiled import partials

    bits = base.view(np.int32 if base.dtype == np.float32 else np.int64)
    ints = np.empty((groups, 5), np.int64)
    floats = np.empty((groups, 4))
    offset2 = RAW_SUMS_MAX_OFFSET ** 2
    workers = (os.cpu_count() or 1) if threads is None else threads
    workers = max(1, min(workers, groups, size // COMPILED_MIN_VALUES_PER_THREAD))
    if workers == 1:
        partials(base, bits, dims, 0, groups, ints, floats, offset2)
    else:
        cuts = np.linspace(0, groups, workers + 1).astype(int)
        map_threads(lambda k: partials(base, bits, dims, cuts[k], cuts[k + 1], ints, floats,
                                       offset2), range(workers), workers)
    return ints, floats


def _kernel_partials(x: np.ndarray, nkept: int, threads: int | None) -> Partial:
    """Partials of the groups on ``x``'s first ``nkept`` axes (values on the rest)."""
    lead = x.shape[:nkept]
    ints, floats, dtype = _run_kernel(x, nkept, threads)
    out = {"count": ints[:, 0], "nan_count": ints[:, 1], "inf_count": ints[:, 2]}
    out.update(zip(("mean", "m2", "m3", "m4"), floats.T, strict=True))
    empty = out["count"] == 0
    out["min"] = np.where(empty, np.inf, key_values(ints[:, 3], dtype))
    out["max"] = np.where(empty, -np.inf, key_values(ints[:, 4], dtype))
    return {k: np.ascontiguousarray(v).reshape(lead) for k, v in out.items()}


def channel_table(x: np.ndarray, channel_axis: int, *, threads: int | None = 1) -> np.ndarray:
    """Partial moments of each channel as one ``(channels, 9)`` float64 table.

    Columns in :data:`PARTIAL_FIELDS` order; channels without a finite value
    have NaN in every column after the counts (the layout of a stored
    ``moments`` row and of a summary). The same numbers as
    :func:`partial_moments` over every other axis, with less per-call work,
    for the capture path that calls it for every tensor at every step.

    Examples
    --------
    >>> t = channel_table(np.array([[1.0, 2.0, 3.0], [np.nan, 5.0, 5.0]]), 0)
    >>> t[:, :5].tolist()
    [[3.0, 0.0, 0.0, 2.0, 2.0], [2.0, 1.0, 0.0, 5.0, 0.0]]
    """
    x = np.asarray(x)
    fast = _channel_fast(x, channel_axis, threads)
    if fast is not None:
        ints, floats = fast
        dtype = x.dtype
    else:
        ints, floats, dtype = _run_kernel(np.moveaxis(x, channel_axis, 0), 1, threads)
    out = np.empty((len(ints), len(PARTIAL_FIELDS)))
    out[:, :3] = ints[:, :3]
    out[:, 3:7] = floats
    out[:, 7:9] = key_values(ints[:, 3:5], dtype)
    out[ints[:, 0] == 0, 3:] = np.nan
    return out


def _channel_fast(x: np.ndarray, channel_axis: int, threads: int | None
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`channel_table`'s kernel output for a C-contiguous float32/float64
    ``x``, its layout memoized and its memory viewed by ``reshape`` (no
    ``moveaxis`` or ``as_strided`` per call); None for any other ``x``."""
    if x.dtype not in (np.float32, np.float64) or not x.flags.c_contiguous or x.ndim == 0:
        return None
    axis = channel_axis % x.ndim if -x.ndim <= channel_axis < x.ndim else None
    if axis is None:
        return None  # the general path raises numpy's AxisError
    rest = x.shape[:axis] + x.shape[axis + 1:]
    rest_strides = x.strides[:axis] + x.strides[axis + 1:]
    plan = _layout_plan((x.shape[axis], *rest), (x.strides[axis], *rest_strides),
                        x.dtype.itemsize, 1)
    if plan is None:
        return None
    dims, span, groups = plan
    return _run_partials(x.reshape(-1)[:span], np.array(dims, np.int64), groups, x.size,
                         threads)


def key_values(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float64 values of the order keys the compiled kernel takes min/max over.

    A key is a value's bits as a signed integer with every bit but the sign
    flipped for negative values, so keys order as the values do (-0.0 just
    below +0.0); the map is its own inverse.

    Examples
    --------
    >>> x = np.array([-2.5, -0.0, 0.0, 1.5, np.inf], np.float32)
    >>> b = x.view(np.int32).astype(np.int64)
    >>> keys = b ^ ((b >> 31) & 0x7FFFFFFF)
    >>> bool(np.all(np.diff(keys) > 0)), key_values(keys, np.float32).tolist()
    (True, [-2.5, -0.0, 0.0, 1.5, inf])
    """
    itype, sign = (np.int32, 31) if np.dtype(dtype) == np.float32 else (np.int64, 63)
    k = keys.astype(itype)
    low = itype((1 << sign) - 1)
    return (k ^ ((k >> itype(sign)) & low)).view(dtype).astype(np.float64)


def _empty_partial(lead: tuple[int, ...]) -> Partial:
    """The merge's identity for every group: no values."""
    zeros = np.zeros(lead)
    return {"count": np.zeros(lead, np.int64), "nan_count": np.zeros(lead, np.int64),
            "inf_count": np.zeros(lead, np.int64), "mean": zeros, "m2": zeros.copy(),
            "m3": zeros.copy(), "m4": zeros.copy(), "min": np.full(lead, np.inf),
            "max": np.full(lead, -np.inf)}


def partial_moments(x: np.ndarray, *, axis: int | tuple[int, ...] = -1, keepdims: bool = False,
                    threads: int | None = 1) -> Partial:
    """Moments of the finite values of each group.

    One compiled pass per group (:mod:`~tensorstats.kernels.moments_compiled`,
    GIL released) reads float32 and float64 values where they lie: pooled
    axes need not be last or contiguous, so a channel of a (batch, channel,
    H, W) tensor is read without a transposed copy. ``threads`` > 1 (or None
    for every CPU) splits the groups over threads.

    Parameters
    ----------
    x : ndarray
        Any real dtype.
    axis : int or tuple of int
        The pooled axes (the values of each group); the other axes are the
        groups, in their order.
    keepdims : bool
        Keep the pooled axes with length 1 (only with the default ``axis=-1``).
    threads : int or None
        Worker threads.

    Returns
    -------
    dict of ndarray
        See :data:`PARTIAL_FIELDS`. Empty groups have count 0, mean and sums 0,
        min +inf and max -inf, so they are the identity of the merge.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"moments need real numbers, got dtype {x.dtype}")
    pooled = tuple(sorted(a % x.ndim for a in np.atleast_1d(axis)))
    kept = [a for a in range(x.ndim) if a not in pooled]
    arr = np.transpose(x, kept + list(pooled))  # a view: the kernel follows the strides
    lead = arr.shape[:len(kept)]
    if arr.size == 0:
        out = _empty_partial(lead)
    else:
        out = _kernel_partials(arr, len(kept), threads)
    if keepdims:
        out = {k: v[..., None] for k, v in out.items()}
    return out


def merge_moments(parts: Sequence[Partial] | Partial, axis: int | tuple[int, ...] | None = None,
                  *, keepdims: bool = False) -> Partial:
    """Merge partials: a sequence of same-shaped partials, or one along ``axis``.

    With a sequence, the pieces are stacked on a new last axis and merged along
    it. With one partial and ``axis``, the entries along those axes are merged.
    The merge is associative and commutative up to rounding, so any tree of
    merges over any split of a group gives its moments.

    Parameters
    ----------
    parts : dict or sequence of dict
        Partials from :func:`partial_moments` or from earlier merges.
    axis : int or tuple of int, optional
        Axes of a single partial to merge over (default: the last).
    keepdims : bool
        Keep merged axes with length 1.
    """
    if not isinstance(parts, dict):
        parts = {k: np.stack([np.asarray(p[k]) for p in parts], axis=-1) for k in PARTIAL_FIELDS}
        axis = -1
    elif axis is None:
        axis = -1
    n_i = parts["count"]
    empty = n_i == 0
    if empty.any():  # stored partials of empty groups hold NaN; make them the identity
        parts = {**parts, **{k: np.where(empty, 0.0, parts[k]) for k in ("mean", "m2", "m3", "m4")},
                 "min": np.where(empty, np.inf, parts["min"]),
                 "max": np.where(empty, -np.inf, parts["max"])}
    count = n_i.sum(axis=axis, keepdims=True)
    w = n_i.astype(np.float64)
    mean = np.divide((w * parts["mean"]).sum(axis=axis, keepdims=True), count,
                     out=np.zeros(count.shape), where=count > 0)
    delta = parts["mean"] - mean
    delta = np.where(n_i > 0, delta, 0.0)
    m2_i, m3_i = parts["m2"], parts["m3"]
    d2 = delta * delta
    m2 = (m2_i + w * d2).sum(axis=axis, keepdims=True)
    m3 = (m3_i + 3.0 * delta * m2_i + w * d2 * delta).sum(axis=axis, keepdims=True)
    m4 = (parts["m4"] + 4.0 * delta * m3_i + 6.0 * d2 * m2_i + w * d2 * d2).sum(
        axis=axis, keepdims=True)
    out = {
        "count": count,
        "nan_count": parts["nan_count"].sum(axis=axis, keepdims=True),
        "inf_count": parts["inf_count"].sum(axis=axis, keepdims=True),
        "mean": mean, "m2": m2, "m3": m3, "m4": m4,
        "min": parts["min"].min(axis=axis, keepdims=True),
        "max": parts["max"].max(axis=axis, keepdims=True),
    }
    if not keepdims:
        out = {k: np.squeeze(v, axis=axis) for k, v in out.items()}
    return out


def finish_moments(p: Partial) -> dict[str, np.ndarray]:
    """Turn a partial into the result variables (:data:`RESULT_FIELDS`).

    ``var`` divides by ``count`` (ddof=0); ``skew`` and ``kurtosis`` are the
    biased sample skewness g1 and excess kurtosis g2 (scipy's defaults). Groups
    with no finite value get NaN in every float; ``skew`` and ``kurtosis`` are
    NaN for fewer than 3 values or zero variance.
    """
    count = np.asarray(p["count"])
    n = count.astype(np.float64)
    has = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(has, p["mean"], np.nan)
        # A group whose min equals its max is constant, whatever rounding left
        # in m2 when chunk means that differ in the last bit were merged.
        constant = np.asarray(p["min"]) == np.asarray(p["max"])
        m2 = np.where(constant, 0.0, p["m2"])
        var = np.where(has, m2 / n, np.nan)
        shaped = (count >= 3) & (m2 > 0)
        m2 = np.where(shaped, m2, 1.0)
        skew = np.where(shaped, np.sqrt(n) * p["m3"] / m2 ** 1.5, np.nan)
        kurt = np.where(shaped, n * p["m4"] / (m2 * m2) - 3.0, np.nan)
    return {
        "count": count,
        "nan_count": np.asarray(p["nan_count"]),
        "inf_count": np.asarray(p["inf_count"]),
        "mean": mean,
        "var": var,
        "std": np.sqrt(var),
        "skew": skew,
        "kurtosis": kurt,
        "min": np.where(has, p["min"], np.nan),
        "max": np.where(has, p["max"], np.nan),
    }

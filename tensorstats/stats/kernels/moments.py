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

from collections.abc import Sequence

import numpy as np

PARTIAL_FIELDS = ("count", "nan_count", "inf_count", "mean", "m2", "m3", "m4", "min", "max")
"""Keys of a partial, in the order the collector stores them (``MOMENT_NAMES``)."""

RESULT_FIELDS = ("count", "nan_count", "inf_count", "mean", "var", "std", "skew", "kurtosis",
                 "min", "max")
"""Variables :func:`finish_moments` returns, in the order ``ts.moments`` lists them."""

COUNT_FIELDS = ("count", "nan_count", "inf_count")

Partial = dict[str, np.ndarray]


def partial_moments(x: np.ndarray, *, keepdims: bool = False) -> Partial:
    """Moments of the finite values of each group along the last axis.

    Two passes in float64: the mean, then sums of centred powers.

    Parameters
    ----------
    x : ndarray
        Any real dtype; groups along every leading axis, samples on the last.
    keepdims : bool
        Keep the reduced axis with length 1.

    Returns
    -------
    dict of ndarray
        See :data:`PARTIAL_FIELDS`. Empty groups have count 0, mean and sums 0,
        min +inf and max -inf, so they are the identity of the merge.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fc" or x.shape[-1] == 0:
        x = x.astype(np.float64)
    n_total = x.shape[-1]
    finite = None
    nan_count = inf_count = np.zeros(x.shape[:-1], np.int64)
    isfinite = np.isfinite(x)
    if not isfinite.all():
        finite = isfinite
        nan_count = np.isnan(x).sum(axis=-1, dtype=np.int64)
        inf_count = n_total - nan_count - finite.sum(axis=-1, dtype=np.int64)
    if finite is None:
        count = np.full(x.shape[:-1], n_total, np.int64)
        total = x.sum(axis=-1, dtype=np.float64)
        lo = x.min(axis=-1, initial=np.inf).astype(np.float64)
        hi = x.max(axis=-1, initial=-np.inf).astype(np.float64)
    else:
        count = n_total - nan_count - inf_count
        total = np.where(finite, x, 0).sum(axis=-1, dtype=np.float64)
        lo = np.where(finite, x, np.inf).min(axis=-1, initial=np.inf).astype(np.float64)
        hi = np.where(finite, x, -np.inf).max(axis=-1, initial=-np.inf).astype(np.float64)
    mean = np.divide(total, count, out=np.zeros(count.shape), where=count > 0)
    d = np.subtract(x, mean[..., None], dtype=np.float64)
    if finite is not None:
        d[~finite] = 0.0
    d2 = d * d
    m2 = d2.sum(axis=-1)
    m3 = np.einsum("...i,...i->...", d2, d)
    m4 = np.einsum("...i,...i->...", d2, d2)
    out = {"count": count, "nan_count": nan_count, "inf_count": inf_count, "mean": mean,
           "m2": m2, "m3": m3, "m4": m4, "min": lo, "max": hi}
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
        var = np.where(has, p["m2"] / n, np.nan)
        shaped = (count >= 3) & (p["m2"] > 0)
        m2 = np.where(shaped, p["m2"], 1.0)
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

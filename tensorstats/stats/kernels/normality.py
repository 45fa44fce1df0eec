"""Batched normality tests: one sort per group, then everything sorted data allows.

:func:`normality_kernel` takes groups on the last axis of a NumPy array and
returns every result as arrays over the leading axes. Groups are subsampled
above ``max_samples``, sorted once, split by how many finite values they hold,
and each size class runs all requested tests together on cache-sized blocks.

This module never imports xarray or dask.

Examples
--------
>>> import numpy as np, scipy.stats
>>> x = np.random.default_rng(1).normal(size=(2, 3, 100))
>>> out = normality_kernel(x, tests=("shapiro", "anderson"))
>>> out["statistic"].shape, out["n"][0, 0]
((2, 3, 2), np.int64(100))
>>> bool(np.isclose(out["statistic"][1, 2, 0], scipy.stats.shapiro(x[1, 2]).statistic))
True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from . import moment_tests, normal_cdf, shapiro
from .blocks import map_row_blocks, rows_per_block
from .moments import RAW_SUMS_MAX_OFFSET, central_sums
from .scratch import scratch
from .subsample import take_subsample

TESTS = ("shapiro", "anderson", "dagostino", "jarque_bera")
"""Test names :func:`normality_kernel` accepts."""

EFFECT_SIZES = ("skew", "kurtosis", "ks_distance")
BLOCK_VALUES = 1 << 17
"""Values per block of groups: float64 temporaries of 1 MiB stay in L2."""


def check_tests(tests: Sequence[str] | str) -> tuple[str, ...]:
    """Validate test names; a single string is one test."""
    if isinstance(tests, str):
        tests = (tests,)
    tests = tuple(tests)
    if not tests:
        raise ValueError("tests is empty; choose from " + ", ".join(TESTS))
    for t in tests:
        if t not in TESTS:
            raise ValueError(f"unknown normality test {t!r}; choose from {', '.join(TESTS)}")
    if len(set(tests)) != len(tests):
        raise ValueError(f"tests lists a test twice: {tests}")
    return tests


@lru_cache(maxsize=64)
def _ones_and_coefficients(n: int) -> np.ndarray:
    out = np.stack([np.ones(n), shapiro.coefficients(n)], axis=1)
    out.setflags(write=False)
    return out


def _central_sums(y: np.ndarray, want_sax: bool, order: int) -> tuple:
    """``(y64, mean, m2, m3, m4, sax)`` of sorted finite rows; ``sax`` is ``y @ a`` or None.

    ``m2..m4`` are sums of centred powers (see
    :func:`~tensorstats.stats.kernels.moments.central_sums`; ``m3`` and ``m4``
    are None for ``order=2``). The Shapiro-Wilk coefficients sum to zero, so
    ``a @ y`` needs no centring, except for rows far from 0 where rounding
    would show; it shares one pass over the data with the row sums.
    """
    n = y.shape[1]
    if y.dtype == np.float64:
        y64 = y
    else:
        y64 = scratch("y64", y.shape, np.float64)
        np.copyto(y64, y)
    sax = s1 = None
    if want_sax:
        s1, sax = (y64 @ _ones_and_coefficients(n)).T
    mean, m2, m3, m4 = central_sums(y64, order=order, s1=s1)
    if want_sax:
        far = np.flatnonzero(~(mean * mean * n <= RAW_SUMS_MAX_OFFSET ** 2 * m2))
        if far.size:
            sax[far] = (y64[far] - mean[far, None]) @ shapiro.coefficients(n)
    return y64, mean, m2, m3, m4, sax


def _fixed_size(y: np.ndarray, tests: tuple[str, ...], effect_size: bool) -> dict:
    """All results for sorted, finite rows ``y`` (g, n) of one size n >= 3."""
    g, n = y.shape
    need_shape = effect_size or "dagostino" in tests or "jarque_bera" in tests
    y64, mean, ss, m3, m4, sax = _central_sums(y, "shapiro" in tests, 4 if need_shape else 2)
    shaped = (y[:, -1] > y[:, 0]) & (ss > 0)
    ss_safe = np.where(shaped, ss, 1.0)
    out = {"statistic": np.full((g, len(tests)), np.nan),
           "pvalue": np.full((g, len(tests)), np.nan)}
    if need_shape:
        g1 = np.where(shaped, np.sqrt(n) * m3 / ss_safe ** 1.5, np.nan)
        g2 = np.where(shaped, n * m4 / (ss_safe * ss_safe) - 3.0, np.nan)
        if effect_size:
            out["skew"], out["kurtosis"] = g1, g2
    t = z = None
    if "anderson" in tests or effect_size:
        inv_sd = 1.0 / np.sqrt(ss_safe / (n - 1))
        z = np.multiply(y64, inv_sd[:, None], out=scratch("z", y.shape, np.float64))
        z -= (mean * inv_sd)[:, None]
        t = normal_cdf.tail_cdf(z, out=scratch("t", y.shape, np.float64))
    for j, test in enumerate(tests):
        if test == "shapiro":
            a = shapiro.coefficients(n)
            w = np.where(shaped, np.minimum(sax * sax / ((a @ a) * ss_safe), 1.0), np.nan)
            stat, p = shapiro.w_pvalue(w, n)
        elif test == "anderson":
            stat = normal_cdf.anderson_statistic(z, t)
            p = normal_cdf.anderson_pvalue(stat, n)
        elif test == "dagostino":
            stat, p = moment_tests.dagostino(n, g1, g2)
        else:
            stat, p = moment_tests.jarque_bera(n, g1, g2)
        out["statistic"][:, j] = np.where(shaped, stat, np.nan)
        out["pvalue"][:, j] = np.where(shaped, p, np.nan)
    if effect_size:
        out["ks_distance"] = np.where(shaped, normal_cdf.ks_distance(z, t), np.nan)
    return out


def _nonfinite_counts(x: np.ndarray, rows: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """NaN and ±inf counts per row, looking only at ``rows`` (a mask) if given."""
    nan_count = np.zeros(len(x), np.int64)
    inf_count = np.zeros(len(x), np.int64)
    if rows is None:
        rows = np.ones(len(x), bool)
    if rows.any():
        sub = x[rows]
        nan_count[rows] = np.isnan(sub).sum(axis=-1)
        inf_count[rows] = np.isinf(sub).sum(axis=-1)
    return nan_count, inf_count


def _finite_rows(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and count of the finite run in each sorted row (-inf first, NaN last)."""
    all_finite = (y[:, 0] > -np.inf) & (y[:, -1] < np.inf)
    start = np.zeros(len(y), np.int64)
    count = np.full(len(y), y.shape[1], np.int64)
    rest = ~all_finite
    if rest.any():
        sub = y[rest]
        start[rest] = (sub == -np.inf).sum(axis=-1)
        count[rest] = np.isfinite(sub).sum(axis=-1)
    return start, count


def _block(x: np.ndarray, keys: np.ndarray | None, tests: tuple[str, ...],
           max_samples: int | None, effect_size: bool) -> dict:
    """All results for a block of groups ``x`` (g, N)."""
    g, width = x.shape
    if width == 0:
        nan = np.full((g, len(tests)), np.nan)
        zero = np.zeros(g, np.int64)
        return {"statistic": nan, "pvalue": nan.copy(), "n": zero, "nan_count": zero,
                "inf_count": zero, **{name: np.full(g, np.nan) for name in EFFECT_SIZES}}
    if x.dtype.kind != "f" or x.dtype.itemsize < 4:
        x = x.astype(np.float64 if x.dtype.itemsize > 2 or x.dtype.kind != "f" else np.float32)
    counts = None
    if max_samples is not None and width > max_samples:
        counts = _nonfinite_counts(x)
        x = take_subsample(x, keys, max_samples)
        width = max_samples
    y = scratch("sorted", x.shape, x.dtype)
    np.copyto(y, x)
    y.sort(axis=-1)
    start, count = _finite_rows(y)
    nan_count, inf_count = counts if counts is not None else _nonfinite_counts(y, count < width)
    out = {"statistic": np.full((g, len(tests)), np.nan),
           "pvalue": np.full((g, len(tests)), np.nan), "n": count,
           "nan_count": nan_count, "inf_count": inf_count}
    for name in EFFECT_SIZES:
        out[name] = np.full(g, np.nan)
    for n in np.unique(count):
        if n < shapiro.MIN_N:
            continue
        rows = np.flatnonzero(count == n)
        if n == width:
            sub = y if len(rows) == g else y[rows]
        else:
            sub = np.take_along_axis(y[rows], start[rows, None] + np.arange(n), axis=-1)
        res = _fixed_size(sub, tests, effect_size)
        for name, val in res.items():
            out[name][rows] = val
    return out


def normality_kernel(x: np.ndarray, *, tests: Sequence[str] = ("shapiro", "anderson"),
                     max_samples: int | None = 5000, keys: np.ndarray | None = None,
                     effect_size: bool = True, threads: int | None = 1) -> dict:
    """Normality tests of every group on the last axis of ``x``.

    Parameters
    ----------
    x : ndarray, shape (..., N)
        Groups on the leading axes, samples on the last. Non-finite values are
        counted and left out.
    tests : sequence of str
        Any of :data:`TESTS`.
    max_samples : int or None
        Groups with more finite values are subsampled to this many.
    keys : ndarray of uint64, shape (...), optional
        One subsampling key per group (see
        :func:`~tensorstats.stats.kernels.subsample.label_keys`); required
        when ``N > max_samples``.
    effect_size : bool
        Compute ``skew``, ``kurtosis`` and ``ks_distance`` (else they are NaN).
    threads : int or None
        Worker threads over blocks of groups; None uses every CPU.

    Returns
    -------
    dict of ndarray
        ``statistic`` and ``pvalue`` (..., len(tests)); ``n``, ``nan_count``,
        ``inf_count``, ``skew``, ``kurtosis``, ``ks_distance`` (...).
    """
    tests = check_tests(tests)
    x = np.asarray(x)
    lead, width = x.shape[:-1], x.shape[-1]
    flat = x.reshape(int(np.prod(lead, dtype=np.int64)), width)
    if max_samples is not None and width > max_samples:
        if keys is None:
            raise ValueError(f"groups of {width} values exceed max_samples={max_samples}: "
                             "subsampling needs one key per group")
        keys = np.broadcast_to(np.asarray(keys, np.uint64), lead).reshape(-1)
    if "shapiro" in tests and (max_samples is None or max_samples > shapiro.MAX_VALIDATED_N) \
            and width > shapiro.MAX_VALIDATED_N:
        warnings.warn(f"Shapiro-Wilk p-values for n > {shapiro.MAX_VALIDATED_N} use Royston's "
                      "approximation outside the range it was validated on", stacklevel=3)
    used = width if max_samples is None else min(width, max_samples)
    parts = map_row_blocks(
        lambda block, k: _block(block, k, tests, max_samples, effect_size),
        flat, keys if keys is not None and keys.ndim else None,
        rows=rows_per_block(used), threads=threads)
    return {name: val.reshape(lead + val.shape[1:]) for name, val in parts.items()}

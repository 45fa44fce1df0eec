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

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import moment_tests, normal_cdf, shapiro
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


def _fixed_size(y: np.ndarray, tests: tuple[str, ...], effect_size: bool) -> dict:
    """All results for sorted, finite rows ``y`` (g, n) of one size n >= 3."""
    g, n = y.shape
    mean = y.sum(axis=-1, dtype=np.float64) / n
    d = np.subtract(y, mean[:, None], dtype=np.float64)
    ss = np.einsum("ij,ij->i", d, d)
    d2 = d * d
    m3 = np.einsum("ij,ij->i", d2, d)
    m4 = np.einsum("ij,ij->i", d2, d2)
    del d2
    shaped = (y[:, -1] > y[:, 0]) & (ss > 0)
    ss_safe = np.where(shaped, ss, 1.0)
    g1 = np.where(shaped, np.sqrt(n) * m3 / ss_safe ** 1.5, np.nan)
    g2 = np.where(shaped, n * m4 / (ss_safe * ss_safe) - 3.0, np.nan)
    out = {"skew": g1, "kurtosis": g2, "statistic": np.full((g, len(tests)), np.nan),
           "pvalue": np.full((g, len(tests)), np.nan), "ks_distance": np.full(g, np.nan)}
    t = z = None
    if "anderson" in tests or effect_size:
        z = d * (1.0 / np.sqrt(ss_safe / (n - 1)))[:, None]
        t = normal_cdf.tail_cdf(z)
    for j, test in enumerate(tests):
        if test == "shapiro":
            a = shapiro.coefficients(n)
            sax = d @ a
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
    if x.dtype.kind != "f" or x.dtype.itemsize < 4:
        x = x.astype(np.float64 if x.dtype.itemsize > 2 or x.dtype.kind != "f" else np.float32)
    nan_count = np.isnan(x).sum(axis=-1, dtype=np.int64)
    inf_count = np.isinf(x).sum(axis=-1, dtype=np.int64)
    if max_samples is not None and width > max_samples:
        x = take_subsample(x, keys, max_samples)
        width = max_samples
    y = np.sort(x, axis=-1)
    start, count = _finite_rows(y)
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
        Also compute ``ks_distance`` (one normal CDF per value).
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
    flat = x.reshape(-1, width)
    if max_samples is not None and width > max_samples:
        if keys is None:
            raise ValueError(f"groups of {width} values exceed max_samples={max_samples}: "
                             "subsampling needs one key per group")
        keys = np.broadcast_to(np.asarray(keys, np.uint64), lead).reshape(-1)
    if "shapiro" in tests and (max_samples is None or max_samples > shapiro.MAX_VALIDATED_N) \
            and width > shapiro.MAX_VALIDATED_N:
        warnings.warn(f"Shapiro-Wilk p-values for n > {shapiro.MAX_VALIDATED_N} use Royston's "
                      "approximation outside the range it was validated on", stacklevel=3)
    rows = max(1, BLOCK_VALUES // max(1, min(width, max_samples or width)))
    starts = range(0, flat.shape[0], rows)

    def run(s: int) -> dict:
        k = None if keys is None else keys[s:s + rows]
        return _block(flat[s:s + rows], k, tests, max_samples, effect_size)

    workers = (os.cpu_count() or 1) if threads is None else threads
    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(min(workers, len(starts))) as pool:
            parts = list(pool.map(run, starts))
    else:
        parts = [run(s) for s in starts]
    if not parts:
        parts = [_block(flat, keys, tests, max_samples, effect_size)]
    out = {}
    for name in parts[0]:
        val = np.concatenate([p[name] for p in parts])
        out[name] = val.reshape(lead + val.shape[1:])
    return out

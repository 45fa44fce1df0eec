"""Batched normality tests: one sort per group, then everything sorted data allows.

:func:`normality_kernel` takes groups on the last axis of a NumPy array and
returns every result as arrays over the leading axes. Groups are subsampled
above ``max_samples``, sorted once, split by how many finite values they hold,
and each size class makes every pass over its values on cache-sized blocks
(phase one, threaded); what is left per group -- moments from power sums,
W, p-values -- runs once over all groups (phase two).

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
from .blocks import BLOCK_VALUES, map_row_blocks, rows_per_block
from .choices import check_choices
from .moments import RAW_SUMS_MAX_OFFSET, power_sums
from .scratch import scratch
from .sorting import sorted_groups

TESTS = ("shapiro", "anderson", "dagostino", "jarque_bera")
"""Test names :func:`normality_kernel` accepts."""



def check_tests(tests: Sequence[str] | str) -> tuple[str, ...]:
    """Validate test names; a single string is one test."""
    return check_choices(tests, TESTS, argument="tests", kind="normality test")


@lru_cache(maxsize=64)
def _coefficients(n: int) -> np.ndarray:
    out = shapiro.coefficients(n)[:, None]
    out.setflags(write=False)
    return out


def _sums(y: np.ndarray, center: np.ndarray | None, tests: tuple[str, ...], order: int,
          want_cdf: bool, effect_size: bool) -> dict:
    """The per-value work for sorted finite rows ``y`` (g, n) of one size n >= 3.

    Sums of powers of ``y - center`` (``center`` 0 when None), ``a @ y`` for
    Shapiro-Wilk, and -- for Anderson-Darling and the KS distance -- the
    standardized values' normal CDF, reduced to A² and the KS distance.
    Everything per group that needs no pass over the values is left to
    :func:`_finish`.
    """
    n = y.shape[1]
    out = {"constant": ~(y[:, -1] > y[:, 0])}
    # Blocks of BLOCK_VALUES: with the sort in between, two threads scale better
    # over these than over L2-sized pieces (measured).
    sums = power_sums(y, center, order=order, piece=BLOCK_VALUES,
                      weights=_coefficients(n) if "shapiro" in tests else None)
    out.update((k, v) for k, v in sums.items() if k != "weighted")
    if "shapiro" in tests:
        out["sax"] = sums["weighted"][:, 0]
    if not want_cdf:
        return out
    mean = out["s1"] / n
    ss = np.maximum(out["s2"] - mean * out["s1"], 0.0)
    inv_sd = 1.0 / np.sqrt(np.where(ss > 0, ss, 1.0) / (n - 1))
    # the values the sums were taken of: y itself (float32 stays float32), or y - center
    values = y if center is None else np.subtract(
        y, center[:, None], out=scratch("centered", y.shape, np.float64))
    if "anderson" not in tests:  # the KS distance alone needs Φ only near its maximum
        out["ks"] = normal_cdf.ks_distance_pruned(values, mean, inv_sd)
        return out
    z = np.multiply(values, inv_sd[:, None], out=scratch("z", y.shape, np.float64))
    z -= (mean * inv_sd)[:, None]
    t = normal_cdf.tail_cdf(z, out=scratch("t", y.shape, np.float64))
    out["a2"] = normal_cdf.anderson_statistic(z, t)
    if effect_size:
        out["ks"] = normal_cdf.ks_distance(z, t)
    return out


def _block(x: np.ndarray, keys: np.ndarray | None, tests: tuple[str, ...],
           max_samples: int | None, effect_size: bool) -> dict:
    """Phase one, per block of groups ``x`` (g, N): sort and every pass over values."""
    g, width = x.shape
    order = 4 if effect_size or "dagostino" in tests or "jarque_bera" in tests else 2
    want_cdf = effect_size or "anderson" in tests
    fields = ["s1", "s2", "s3", "s4", "sax", "a2", "ks"]
    out = {name: np.full(g, np.nan) for name in fields}
    out["constant"] = np.ones(g, bool)
    out["center"] = np.zeros(g)
    if width == 0:
        zero = np.zeros(g, np.int64)
        return {**out, "n": zero, "nan_count": zero, "inf_count": zero}
    y, start, count, nan_count, inf_count = sorted_groups(x, keys, max_samples)
    out.update(n=count, nan_count=nan_count, inf_count=inf_count)
    full = count == y.shape[1]
    sizes = [y.shape[1]] if full.all() else np.unique(count)
    for n in sizes:
        if n < shapiro.MIN_N:
            continue
        if n == y.shape[1] and full.all():
            rows, sub = slice(None), y
        else:
            rows = np.flatnonzero(count == n)
            sub = np.take_along_axis(y[rows], start[rows, None] + np.arange(n), axis=-1)
        for name, val in _sums(sub, None, tests, order, want_cdf, effect_size).items():
            out[name][rows] = val
    return out


def _finish(raw: dict, tests: tuple[str, ...], effect_size: bool) -> dict:
    """Phase two, once over all groups: moments, statistics and p-values."""
    n = raw["n"]
    nf = n.astype(np.float64)
    g = n.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = raw["s1"] / nf  # mean of the values minus their row's center
        m2 = raw["s2"] - d * raw["s1"]
        shaped = (n >= shapiro.MIN_N) & ~raw["constant"] & (m2 > 0)
        m2 = np.where(shaped, m2, 1.0)
        g1 = g2 = np.full(g, np.nan)
        if effect_size or "dagostino" in tests or "jarque_bera" in tests:
            d2 = d * d
            m3 = raw["s3"] - 3.0 * d * raw["s2"] + 2.0 * d2 * raw["s1"]
            m4 = raw["s4"] - 4.0 * d * raw["s3"] + 6.0 * d2 * raw["s2"] - 3.0 * d2 * d2 * nf
            g1 = np.where(shaped, np.sqrt(nf) * m3 / m2 ** 1.5, np.nan)
            g2 = np.where(shaped, nf * m4 / (m2 * m2) - 3.0, np.nan)
    stat = np.full((g, len(tests)), np.nan)
    pval = np.full((g, len(tests)), np.nan)
    sizes = n[shaped]
    sizes = sizes[:1] if sizes.size and sizes.min() == sizes.max() else np.unique(sizes)
    for j, test in enumerate(tests):
        if test == "shapiro":
            for size in sizes:
                rows = np.flatnonzero(shaped & (n == size)) if len(sizes) > 1 else shaped
                w = shapiro.w_statistic(raw["sax"][rows], m2[rows], int(size))
                stat[rows, j], pval[rows, j] = shapiro.w_pvalue(w, int(size))
        elif test == "anderson":
            stat[:, j] = raw["a2"]
            pval[:, j] = normal_cdf.anderson_pvalue(raw["a2"], nf)
        elif test == "dagostino":
            with np.errstate(invalid="ignore", divide="ignore"):
                stat[:, j], pval[:, j] = moment_tests.dagostino(nf, g1, g2)
        else:
            stat[:, j], pval[:, j] = moment_tests.jarque_bera(nf, g1, g2)
    stat[~shaped] = np.nan
    pval[~shaped] = np.nan
    out = {"statistic": stat, "pvalue": pval, "n": n, "nan_count": raw["nan_count"],
           "inf_count": raw["inf_count"]}
    nan = np.full(g, np.nan)
    out["skew"] = g1 if effect_size else nan
    out["kurtosis"] = g2 if effect_size else nan.copy()
    out["ks_distance"] = np.where(shaped, raw["ks"], np.nan) if effect_size else nan
    return out


def _recenter(raw: dict, flat: np.ndarray, keys: np.ndarray | None, tests: tuple[str, ...],
              max_samples: int | None, effect_size: bool) -> None:
    """Redo, about their own mean, the rows whose mean is far from 0 (in place).

    Sums of powers about 0 lose digits when |mean| >> std (1e7 + 0.1 * noise);
    those rows (see :data:`~tensorstats.kernels.moments.RAW_SUMS_MAX_OFFSET`)
    are sorted again and their sums taken about their mean, which becomes the
    row's ``center``. Typical tensors have none.
    """
    n = raw["n"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = raw["s1"] / n
        m2 = raw["s2"] - mean * raw["s1"]
        far = (raw["n"] >= shapiro.MIN_N) & ~raw["constant"] & ~(
            mean * mean * n <= RAW_SUMS_MAX_OFFSET ** 2 * m2)
    order = 4 if effect_size or "dagostino" in tests or "jarque_bera" in tests else 2
    want_cdf = effect_size or "anderson" in tests
    for row in np.flatnonzero(far):
        k = None if keys is None else keys[row:row + 1]
        y, start, count, _, _ = sorted_groups(flat[row:row + 1], k, max_samples)
        sub = y[:, start[0]:start[0] + count[0]]
        res = _sums(sub, mean[row:row + 1], tests, order, want_cdf, effect_size)
        raw["center"][row] = mean[row]
        for name, val in res.items():
            raw[name][row] = val[0]


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
        :func:`~tensorstats.kernels.subsample.label_keys`); required
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
    keys = keys if keys is not None and keys.ndim else None
    # Blocks are sized by the values read, not those kept: subsampling holds a
    # draw per value, so wide groups go a few rows at a time.
    raw = map_row_blocks(lambda block, k: _block(block, k, tests, max_samples, effect_size),
                         flat, keys, rows=rows_per_block(width), threads=threads)
    _recenter(raw, flat, keys, tests, max_samples, effect_size)
    out = _finish(raw, tests, effect_size)
    return {name: val.reshape(lead + val.shape[1:]) for name, val in out.items()}

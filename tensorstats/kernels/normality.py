"""Batched normality tests: one sort per group, then everything sorted data allows.

:func:`normality_kernel` takes groups on the last axis of a NumPy array and
returns every result as arrays over the leading axes. Groups are subsampled
above ``max_samples``, sorted once, split by how many finite values they hold,
and each size class makes every pass over its values in one compiled kernel
(:mod:`.normality_fused`) on blocks of groups (phase one, threaded: the sort
and the kernel release the GIL); what is left per group -- moments from
power sums, W, p-values -- runs once over all groups (phase two).

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

import numpy as np

from . import moment_tests, normal_cdf, shapiro
from .blocks import map_row_blocks, rows_per_block
from .choices import check_choices
from .moments import RAW_SUMS_MAX_OFFSET
from .normality_fused import fused_sums
from .sorting import sorted_groups

TESTS = ("shapiro", "anderson", "dagostino", "jarque_bera")
"""Test names :func:`normality_kernel` accepts."""
BLOCK_VALUES = 1 << 19
"""Values per block of groups: twice :data:`.blocks.BLOCK_VALUES`, as the compiled
passes keep no float64 temporaries of a whole block (5-10% faster than 2**18
and 2**20 for 20,000 groups of 256 values on the development VM)."""



def check_tests(tests: Sequence[str] | str) -> tuple[str, ...]:
    """Validate test names; a single string is one test."""
    return check_choices(tests, TESTS, argument="tests", kind="normality test")


def _sums(y: np.ndarray, rows: np.ndarray, start: np.ndarray, n: int,
          center: np.ndarray | None, tests: tuple[str, ...], order: int,
          effect_size: bool) -> dict:
    """The per-value work for the sorted finite runs ``y[rows, start:start + n]``, n >= 3.

    Sums of powers of ``y - center`` (``center`` 0 when None), ``a @ y`` for
    Shapiro-Wilk, and -- for Anderson-Darling and the KS distance -- A² and
    the KS distance of the standardized values, in one compiled pass (two
    with the CDF) per row (:func:`~tensorstats.kernels.normality_fused.fused_sums`).
    Everything per group that needs no pass over the values is left to
    :func:`_finish`.
    """
    return fused_sums(y, rows, start, n, center, order=order, shapiro="shapiro" in tests,
                      anderson="anderson" in tests, ks=effect_size)


def _block(x: np.ndarray, keys: np.ndarray | None, tests: tuple[str, ...],
           max_samples: int | None, effect_size: bool) -> dict:
    """Phase one, per block of groups ``x`` (g, N): sort and every pass over values."""
    g, width = x.shape
    order = 4 if effect_size or "dagostino" in tests or "jarque_bera" in tests else 2
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
        every = n == y.shape[1] and full.all()
        rows = np.arange(g) if every else np.flatnonzero(count == n)
        res = _sums(y, rows, start[rows], int(n), None, tests, order, effect_size)
        for name, val in res.items():
            out[name][slice(None) if every else rows] = val
    return out


def _size_classes(n: np.ndarray, shaped: np.ndarray) -> list[tuple[int, slice | np.ndarray]]:
    """``(size, rows)`` for each size among the shaped groups (a slice when that is all)."""
    if shaped.all() and (n == n[0]).all():
        return [(int(n[0]), slice(None))]
    return [(int(size), np.flatnonzero(shaped & (n == size))) for size in np.unique(n[shaped])]


def _moments(raw: dict, nf: np.ndarray, m2: np.ndarray, shaped: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Skewness g1 and excess kurtosis g2 from the power sums about each row's centre."""
    d = raw["s1"] / nf
    m3 = raw["s3"] - d * (3.0 * raw["s2"] - 2.0 * d * raw["s1"])
    m4 = raw["s4"] - d * (4.0 * raw["s3"] - d * (6.0 * raw["s2"] - 3.0 * d * raw["s1"]))
    g1 = np.where(shaped, np.sqrt(nf) * m3 / (m2 * np.sqrt(m2)), np.nan)
    g2 = np.where(shaped, nf * m4 / (m2 * m2) - 3.0, np.nan)
    return g1, g2


def _finish(raw: dict, tests: tuple[str, ...], effect_size: bool) -> dict:
    """Phase two, once over all groups: moments, statistics and p-values."""
    n = raw["n"]
    nf = n.astype(np.float64)
    g = n.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        m2 = raw["s2"] - raw["s1"] / nf * raw["s1"]
        shaped = (n >= shapiro.MIN_N) & ~raw["constant"] & (m2 > 0)
        m2 = np.where(shaped, m2, 1.0)
        g1 = g2 = np.full(g, np.nan)
        if effect_size or "dagostino" in tests or "jarque_bera" in tests:
            g1, g2 = _moments(raw, nf, m2, shaped)
    stat = np.full((g, len(tests)), np.nan)
    pval = np.full((g, len(tests)), np.nan)
    for j, test in enumerate(tests):
        if test == "shapiro":
            for size, rows in _size_classes(n, shaped) if shaped.any() else []:
                w = shapiro.w_statistic(raw["sax"][rows], m2[rows], size)
                stat[rows, j], pval[rows, j] = shapiro.w_pvalue(w, size)
        elif test == "anderson":
            stat[:, j] = raw["a2"]
            pval[:, j] = normal_cdf.anderson_pvalue(raw["a2"], nf)
        elif test == "dagostino":
            with np.errstate(invalid="ignore", divide="ignore"):
                stat[:, j], pval[:, j] = moment_tests.dagostino(nf, g1, g2)
        else:
            stat[:, j], pval[:, j] = moment_tests.jarque_bera(nf, g1, g2)
    if not shaped.all():
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
    for row in np.flatnonzero(far):
        k = None if keys is None else keys[row:row + 1]
        y, start, count, _, _ = sorted_groups(flat[row:row + 1], k, max_samples)
        res = _sums(y, np.zeros(1, np.int64), start, int(count[0]), mean[row:row + 1], tests,
                    order, effect_size)
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
                         flat, keys, rows=rows_per_block(width, BLOCK_VALUES), threads=threads)
    _recenter(raw, flat, keys, tests, max_samples, effect_size)
    out = _finish(raw, tests, effect_size)
    return {name: val.reshape(lead + val.shape[1:]) for name, val in out.items()}

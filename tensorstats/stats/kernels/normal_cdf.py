"""Tests built on the normal CDF of a standardized sorted sample.

Anderson-Darling A² for the normal with estimated mean and variance, its
p-value as in :func:`statsmodels.stats.diagnostic.normal_ad`, and the KS
distance between the standardized sample and N(0, 1). Both need Φ at every
value; :func:`tail_cdf` evaluates it once and both share it.

Examples
--------
>>> import numpy as np, scipy.stats
>>> x = np.sort(np.random.default_rng(0).normal(size=(3, 40)), axis=-1)
>>> z = (x - x.mean(-1, keepdims=True)) / x.std(-1, ddof=1, keepdims=True)
>>> t = tail_cdf(z)
>>> a2 = anderson_statistic(z, t)
>>> ref = scipy.stats.anderson(x[1], method="interpolate").statistic
>>> bool(abs(a2[1] - ref) < 1e-12)
True
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import ndtr

from .scratch import scratch


def tail_cdf(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Φ(-|z|): the smaller tail, exact in the far tails (no 1 - Φ cancellation)."""
    out = np.abs(z, out=out)
    np.negative(out, out=out)
    return ndtr(out, out=out)


@lru_cache(maxsize=64)
def _weights(n: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(1, n + 1, dtype=np.float64)
    low = (2 * i - 1) / n            # weight of log Φ(z_i)
    high = (2 * (n - i) + 1) / n     # weight of log(1 - Φ(z_i))
    both = (high, low - high)
    for w in both:
        w.setflags(write=False)
    return both


def anderson_statistic(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A² of standardized sorted rows ``z`` given ``t = tail_cdf(z)``.

    ``A² = -n - Σ (2i-1)/n [log Φ(z_i) + log(1 - Φ(z_{n+1-i}))]``, rearranged
    to one log per value and its complement: for z < 0, Φ(z) = t; otherwise
    1 - Φ(z) = t.
    """
    n = z.shape[-1]
    high_w, diff_w = _weights(n)
    log_t = np.log(t, out=scratch("log_t", t.shape, np.float64))
    log_c = np.subtract(1.0, t, out=scratch("log_c", t.shape, np.float64))
    np.log(log_c, out=log_c)
    # log Φ(z) is log_t where z < 0, else log_c; log(1 - Φ(z)) is the other one.
    neg = np.less(z, 0, out=scratch("neg", z.shape, np.bool_))
    s = log_t @ high_w + log_c @ high_w
    np.copyto(log_c, log_t, where=neg)  # log_c now holds log Φ(z)
    s += log_c @ diff_w
    return -n - s


def anderson_pvalue(a2: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """p-value of A² with estimated parameters (Stephens; D'Agostino & Stephens 1986).

    Uses the modified statistic ``A²* = A² (1 + 0.75/n + 2.25/n²)`` and the
    piecewise exponential fits of :func:`statsmodels.stats.diagnostic.normal_ad`;
    p is 0 above ``A²* = 13``, where the last fit stops being monotone.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        a = np.asarray(a2, dtype=np.float64) * (1.0 + 0.75 / n + 2.25 / np.square(n))
        p = np.select(
            [a < 0.2, a < 0.34, a < 0.6, a <= 13.0],
            [1.0 - np.exp(-13.436 + 101.14 * a - 223.73 * a * a),
             1.0 - np.exp(-8.318 + 42.796 * a - 59.938 * a * a),
             np.exp(0.9177 - 4.279 * a - 1.38 * a * a),
             np.exp(1.2937 - 5.709 * a + 0.0186 * a * a)],
            default=0.0)
    return np.where(np.isnan(a), np.nan, p)


@lru_cache(maxsize=64)
def _steps(n: int) -> np.ndarray:
    out = np.arange(1, n + 1, dtype=np.float64) / n
    out.setflags(write=False)
    return out


def ks_distance(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """sup |F_n - Φ| between standardized sorted rows ``z`` and N(0, 1)."""
    n = z.shape[-1]
    gap = np.subtract(1.0, t, out=scratch("gap", t.shape, np.float64))
    np.copyto(gap, t, where=np.less(z, 0, out=scratch("neg", z.shape, np.bool_)))  # Φ(z)
    np.subtract(_steps(n), gap, out=gap)  # i/n - Φ(z_i)
    return np.maximum(gap.max(axis=-1), 1.0 / n - gap.min(axis=-1))


GRID_STEP = 2.0 ** -10
"""Spacing of the tabulated normal CDF :func:`ks_distance_pruned` screens with."""
GRID_HALF_WIDTH = 9.0
"""The table covers z in [-9, 9]; Φ(-9) ≈ 1.1e-19, far below the screening bound."""
SCREEN_ERROR = 0.3990 * GRID_STEP / 2 * 1.01 + 1e-12
"""Bound on |Φ(z) - table[nearest]|: the largest density φ(0) < 0.3990 times half a
step, with a margin for the rounding of z."""


@lru_cache(maxsize=1)
def _cdf_table() -> np.ndarray:
    grid = np.arange(-GRID_HALF_WIDTH, GRID_HALF_WIDTH + GRID_STEP / 2, GRID_STEP)
    table = ndtr(grid)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=64)
def _half_steps(n: int) -> np.ndarray:
    out = (np.arange(1, n + 1, dtype=np.float64) - 0.5) / n
    out.setflags(write=False)
    return out


def ks_distance_pruned(y: np.ndarray, mean: np.ndarray, inv_sd: np.ndarray) -> np.ndarray:
    """:func:`ks_distance` of ``(y - mean) * inv_sd`` without Φ at every value.

    Exact, not approximate: a table of Φ (nearest grid point, error at most
    :data:`SCREEN_ERROR`) gives every ``i/n - Φ(z_i)`` to within that bound, so
    the true maximum lies among the values whose screened gap is within twice
    the bound of the screened maximum; only those get an exact Φ. Typically a
    few values per row, where :func:`ks_distance` evaluates Φ at all of them.

    Parameters
    ----------
    y : ndarray, shape (g, n)
        Sorted rows (float64).
    mean, inv_sd : ndarray, shape (g,)
        Each row's mean and 1 / std (ddof=1).
    """
    g, n = y.shape
    table = _cdf_table()
    scale = inv_sd / GRID_STEP
    shift = (mean * inv_sd - GRID_HALF_WIDTH) / GRID_STEP - 0.5
    u = np.multiply(y, scale[:, None], out=scratch("ks.u", y.shape, np.float64))
    u -= shift[:, None]  # (z + 9) / step + 0.5: its floor is the nearest grid index
    idx = scratch("ks.idx", y.shape, np.intp)
    idx[...] = u  # truncates; take(mode="clip") maps |z| > 9 to the table's ends
    gap = np.take(table, idx, out=u, mode="clip")  # Φ at the nearest grid point
    # |i/n - Φ(z_i) - 1/(2n)|: the KS distance is 1/(2n) plus the largest of these
    np.subtract(_half_steps(n), gap, out=gap)
    np.abs(gap, out=gap)
    screened = gap.max(axis=-1)
    mask = np.greater_equal(gap, (screened - 2 * SCREEN_ERROR)[:, None],
                            out=scratch("ks.mask", y.shape, np.bool_))
    rows, cols = np.divmod(np.flatnonzero(mask), n)
    z = (y[rows, cols] - mean[rows]) * inv_sd[rows]
    t = ndtr(-np.abs(z))
    cdf = np.where(z < 0, t, 1.0 - t)
    out = np.zeros(g)
    np.maximum.at(out, rows, np.abs((cols + 0.5) / n - cdf))
    return out + 0.5 / n

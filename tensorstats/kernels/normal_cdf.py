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


_AD_BOUNDS = np.array([0.2, 0.34, 0.6])
"""Where the fits of :func:`anderson_pvalue` change (A²* below the first: fit 0)."""
_AD_LAST = 13.0
"""Above this A²*, p is 0 (the last fit stops being monotone)."""
_AD_FITS = np.array([[-13.436, 101.14, -223.73],   # p = 1 - exp(.)
                     [-8.318, 42.796, -59.938],    # p = 1 - exp(.)
                     [0.9177, -4.279, -1.38],      # p = exp(.)
                     [1.2937, -5.709, 0.0186],     # p = exp(.)
                     [0.0, 0.0, 0.0]])             # p = 0
"""Coefficients (1, A²*, A²*²) of the exponent of each fit (statsmodels' ``normal_ad``)."""


def anderson_pvalue(a2: np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """p-value of A² with estimated parameters (Stephens; D'Agostino & Stephens 1986).

    Uses the modified statistic ``A²* = A² (1 + 0.75/n + 2.25/n²)`` and the
    piecewise exponential fits of :func:`statsmodels.stats.diagnostic.normal_ad`;
    p is 0 above ``A²* = 13``, where the last fit stops being monotone.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        a = np.asarray(a2, dtype=np.float64) * (1.0 + 0.75 / n + 2.25 / np.square(n))
        # One exp per value: each value's fit picked first (np.select over the
        # four fits evaluated them all).
        fit = np.asarray(np.searchsorted(_AD_BOUNDS, a, side="right"))
        fit[~(a <= _AD_LAST)] = len(_AD_FITS) - 1
        c0, c1, c2 = (np.take(_AD_FITS[:, j], fit) for j in range(3))  # 1-d takes: fast
        e = np.exp(c0 + c1 * a + c2 * a * a)  # statsmodels' order of operations: same bits
        p = np.where(fit < 2, 1.0 - e, e)
        p[fit == len(_AD_FITS) - 1] = 0.0
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
FLOAT32_SCREEN_MAX_N = 1 << 16
"""float32 rows of at most this many values are screened in float32 arithmetic."""
FLOAT32_INDEX_SLACK = 0.06
"""Bound, in grid steps, on the float32 rounding of a grid position. For rows
that :func:`~tensorstats.kernels.normality` does not re-centre
(|mean| <= 10 sd), |y * scale| <= (10 + sqrt(n)) / step and the position's
rounding is below 2**-24 * (48 + 3 sqrt(n)) / step: 0.05 steps at n = 2**16."""
SCREEN_ERROR_FLOAT32 = 0.3990 * GRID_STEP * (0.5 + FLOAT32_INDEX_SLACK) * 1.01 + 1e-6
""":data:`SCREEN_ERROR` for float32 screening: the position may be off by
:data:`FLOAT32_INDEX_SLACK` more, and the table, the centres and the gaps
carry float32 rounding (under 1e-6 together)."""
SCREEN_PIECE_VALUES = 1 << 18
"""Values screened per step. Smaller pieces run faster on one thread (cache)
but hand the GIL over more often, which costs more on two (measured)."""


@lru_cache(maxsize=2)
def _cdf_table(dtype: type = np.float64) -> np.ndarray:
    grid = np.arange(-GRID_HALF_WIDTH, GRID_HALF_WIDTH + GRID_STEP / 2, GRID_STEP)
    table = ndtr(grid).astype(dtype)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=64)
def _half_steps(n: int, dtype: type = np.float64) -> np.ndarray:
    out = ((np.arange(1, n + 1, dtype=np.float64) - 0.5) / n).astype(dtype)
    out.setflags(write=False)
    return out


def ks_distance_pruned(y: np.ndarray, mean: np.ndarray, inv_sd: np.ndarray) -> np.ndarray:
    """:func:`ks_distance` of ``(y - mean) * inv_sd`` without Φ at every value.

    Exact, not approximate: a table of Φ (nearest grid point, error at most
    :data:`SCREEN_ERROR`) gives every ``i/n - Φ(z_i)`` to within that bound, so
    the true maximum lies among the values whose screened gap is within twice
    the bound of the screened maximum; only those get an exact Φ. Typically a
    few values per row, where :func:`ks_distance` evaluates Φ at all of them.
    float32 rows are screened in float32 (half the memory traffic) with the
    wider bound :data:`SCREEN_ERROR_FLOAT32`, in cache-sized pieces.

    Parameters
    ----------
    y : ndarray, shape (g, n)
        Sorted rows (float32 or float64). float32 rows must not be far from
        0 relative to their spread (|mean| <= 10 sd); re-centre them first.
    mean, inv_sd : ndarray, shape (g,)
        Each row's mean and 1 / std (ddof=1).
    """
    g, n = y.shape
    single = y.dtype == np.float32 and n <= FLOAT32_SCREEN_MAX_N
    dtype = np.float32 if single else np.float64
    bound = SCREEN_ERROR_FLOAT32 if single else SCREEN_ERROR
    table, centers = _cdf_table(dtype), _half_steps(n, dtype)
    scale = (inv_sd / GRID_STEP).astype(dtype)
    # (z + 9) / step + 0.5: its floor is the nearest grid index
    shift = ((mean * inv_sd - GRID_HALF_WIDTH) / GRID_STEP - 0.5).astype(dtype)
    rows = max(1, SCREEN_PIECE_VALUES // max(n, 1))
    gap_buf = scratch("ks.gap", (rows, n), dtype)
    idx_buf = scratch("ks.idx", (rows, n), np.intp)
    near_buf = scratch("ks.near", (rows, n), np.bool_)
    found = []
    for r0 in range(0, g, rows):
        r1 = min(r0 + rows, g)
        gap, idx, near = gap_buf[:r1 - r0], idx_buf[:r1 - r0], near_buf[:r1 - r0]
        np.multiply(y[r0:r1], scale[r0:r1, None], out=gap)
        gap -= shift[r0:r1, None]
        idx[...] = gap  # truncates; take(mode="clip") maps |z| > 9 to the table's ends
        np.take(table, idx, out=gap, mode="clip")  # Φ at the nearest grid point
        # |i/n - Φ(z_i) - 1/(2n)|: the KS distance is 1/(2n) plus the largest of these
        np.subtract(centers, gap, out=gap)
        np.abs(gap, out=gap)
        screened = gap.max(axis=-1)
        np.greater_equal(gap, (screened - 2 * bound)[:, None], out=near)
        found.append(np.flatnonzero(near) + r0 * n)
    rows, cols = np.divmod(np.concatenate(found) if found else np.zeros(0, np.intp), n)
    z = (y[rows, cols].astype(np.float64) - mean[rows]) * inv_sd[rows]
    t = ndtr(-np.abs(z))
    cdf = np.where(z < 0, t, 1.0 - t)
    out = np.zeros(g)
    np.maximum.at(out, rows, np.abs((cols + 0.5) / n - cdf))
    return out + 0.5 / n

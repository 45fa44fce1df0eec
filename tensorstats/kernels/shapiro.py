"""Batched Shapiro-Wilk W test (Royston 1992/1995, algorithm AS R94).

The same algorithm as :func:`scipy.stats.shapiro`, vectorized over groups of
one size: the coefficients depend only on ``n``, so every group of that size
shares them (cached), and W is one matrix-vector product over sorted data.

References
----------
Royston, P. (1995). Remark AS R94: A remark on algorithm AS 181: the W-test
for normality. *Applied Statistics* 44(4), 547-551.

Beasley, J. D. and Springer, S. G. (1977). Algorithm AS 111: the percentage
points of the normal distribution. *Applied Statistics* 26(1), 118-121.

Examples
--------
>>> import numpy as np, scipy.stats
>>> x = np.sort(np.random.default_rng(0).normal(size=(4, 50)), axis=-1)
>>> w, p = shapiro_sorted(x)
>>> ref = scipy.stats.shapiro(x[2])
>>> bool(abs(w[2] - ref.statistic) < 1e-12 and abs(p[2] - ref.pvalue) < 1e-9)
True
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import ndtr

MIN_N = 3
MAX_VALIDATED_N = 5000
"""Royston's p-value approximation is validated for 3 <= n <= 5000."""

SMALL_P = 1e-19
"""AS R94 returns this p-value when W is below the range of its approximation (n <= 11)."""


def _ppnd(p: np.ndarray) -> np.ndarray:
    """Normal quantiles by AS 111, the approximation AS R94 is built on."""
    q = p - 0.5
    out = np.empty_like(q)
    central = np.abs(q) <= 0.42
    r = q[central] ** 2
    out[central] = q[central] * (((-25.44106049637 * r + 41.39119773534) * r
                                  - 18.61500062529) * r + 2.50662823884) / (
        (((3.13082909833 * r - 21.06224101826) * r + 23.08336743743) * r
         - 8.47351093090) * r + 1.0)
    tail = ~central
    r = np.where(q[tail] > 0, 1.0 - p[tail], p[tail])
    r = np.sqrt(-np.log(r))
    val = (((2.32121276858 * r + 4.85014127135) * r - 2.29796479134) * r - 2.78718931138) / (
        (1.63706781897 * r + 3.54388924762) * r + 1.0)
    out[tail] = np.where(q[tail] < 0, -val, val)
    return out


def _poly(coef: tuple[float, ...], x: np.ndarray | float) -> np.ndarray | float:
    """``coef[0] + coef[1]*x + coef[2]*x**2 + ...`` (Horner)."""
    out = 0.0 * x
    for c in reversed(coef):
        out = out * x + c
    return out


@lru_cache(maxsize=128)
def coefficients(n: int) -> np.ndarray:
    """The W-test coefficients for sorted samples of size ``n``, centred.

    Returns the full antisymmetric vector (length ``n``, read-only), minus its
    mean, so that ``W = (a @ x)**2 / (a @ a * sum((x - x.mean())**2))``.
    """
    if n < MIN_N:
        raise ValueError(f"Shapiro-Wilk needs at least {MIN_N} samples, got {n}")
    half = n // 2
    if n == 3:
        upper = np.array([np.sqrt(0.5)])
    else:
        m = _ppnd((np.arange(1, half + 1) - 0.375) / (n + 0.25))
        summ2 = 2.0 * np.sum(m * m)
        ssumm2 = np.sqrt(summ2)
        rsn = 1.0 / np.sqrt(n)
        a1 = _poly((0.0, 0.221157, -0.147981, -2.071190, 4.434685, -2.706056), rsn) - m[0] / ssumm2
        upper = -m / 1.0
        if n > 5:
            a2 = -m[1] / ssumm2 + _poly((0.0, 0.042981, -0.293762, -1.752461, 5.682633,
                                         -3.582633), rsn)
            fac = np.sqrt((summ2 - 2.0 * m[0] ** 2 - 2.0 * m[1] ** 2)
                          / (1.0 - 2.0 * a1 ** 2 - 2.0 * a2 ** 2))
            upper = -m / fac
            upper[1] = a2
        else:
            fac = np.sqrt((summ2 - 2.0 * m[0] ** 2) / (1.0 - 2.0 * a1 ** 2))
            upper = -m / fac
        upper[0] = a1
    full = np.zeros(n)
    full[:half] = -upper
    full[n - half:] = upper[::-1]
    full -= full.mean()
    full.setflags(write=False)
    return full


def w_statistic(sax: np.ndarray, ssx: np.ndarray, n: int) -> np.ndarray:
    """W from ``a @ x`` and the sum of squared deviations of sorted samples of size ``n``."""
    a = coefficients(n)
    return np.minimum(sax * sax / ((a @ a) * ssx), 1.0)


def w_pvalue(w: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Royston's p-value of W for samples of size ``n``; returns ``(w, p)``.

    For ``n == 3`` W is clamped to its minimum 0.75 and p is exact.
    """
    w = np.asarray(w, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if n == 3:
            w = np.maximum(w, 0.75)
            p = 1.0 - (6.0 / np.pi) * np.arccos(np.sqrt(w))
            return w, np.where(np.isnan(w), np.nan, np.maximum(p, 0.0))
        y = np.log1p(-w)
        if n <= 11:
            gamma = _poly((-2.273, 0.459), float(n))
            below = y >= gamma
            y = -np.log(gamma - np.where(below, gamma - 1.0, y))
            m = _poly((0.5440, -0.39978, 0.025054, -0.6714e-3), float(n))
            s = np.exp(_poly((1.3822, -0.77857, 0.062767, -0.20322e-2), float(n)))
        else:
            below = False
            xx = np.log(n)
            m = _poly((-1.5861, -0.31082, -0.083751, 0.0038915), xx)
            s = np.exp(_poly((-0.4803, -0.082676, 0.0030302), xx))
        p = ndtr(-(y - m) / s)
        p = np.where(below, SMALL_P, p)
    return w, np.where(np.isnan(w), np.nan, p)


def shapiro_sorted(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W and p for each row of ``y``: sorted, finite, all of one size ``n >= 3``.

    Rows with zero range give NaN.

    Parameters
    ----------
    y : ndarray, shape (..., n)
        Each row sorted ascending and finite.

    Returns
    -------
    w, p : ndarray, shape (...)
    """
    n = y.shape[-1]
    a = coefficients(n)
    c = np.subtract(y, y[..., n // 2, None], dtype=np.float64)
    s1 = c.sum(axis=-1)
    ssx = np.vecdot(c, c) - s1 * s1 / n
    with np.errstate(divide="ignore", invalid="ignore"):
        w = w_statistic(c @ a, ssx, n)
    w = np.where((y[..., -1] > y[..., 0]) & (ssx > 0), w, np.nan)
    return w_pvalue(w, n)

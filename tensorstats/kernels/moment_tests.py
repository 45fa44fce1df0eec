"""Normality tests that need only n, skewness and kurtosis.

D'Agostino-Pearson K² (:func:`scipy.stats.normaltest`: D'Agostino 1970's
skewness test and Anscombe & Glynn 1983's kurtosis test) and Jarque-Bera
(:func:`scipy.stats.jarque_bera`), vectorized over groups that may differ in
size.

Examples
--------
>>> import numpy as np, scipy.stats
>>> x = np.random.default_rng(0).standard_t(5, size=200)
>>> g1, g2 = scipy.stats.skew(x), scipy.stats.kurtosis(x)
>>> k2, p = dagostino(200, g1, g2)
>>> ref = scipy.stats.normaltest(x)
>>> bool(np.isclose(k2, ref.statistic, rtol=1e-12) and np.isclose(p, ref.pvalue, rtol=1e-10))
True
"""

from __future__ import annotations

import numpy as np
from scipy.special import chdtrc

MIN_N_DAGOSTINO = 8
"""The skewness test's normal approximation needs n >= 8 (scipy's limit)."""


def skew_z(n: np.ndarray, g1: np.ndarray) -> np.ndarray:
    """D'Agostino's normal score of the sample skewness g1."""
    n = np.asarray(n, dtype=np.float64)
    y = g1 * np.sqrt((n + 1) * (n + 3) / (6.0 * (n - 2)))
    beta2 = 3.0 * (n * n + 27 * n - 70) * (n + 1) * (n + 3) / (
        (n - 2.0) * (n + 5) * (n + 7) * (n + 9))
    w2 = -1.0 + np.sqrt(2.0 * (beta2 - 1.0))
    delta = 1.0 / np.sqrt(0.5 * np.log(w2))
    alpha = np.sqrt(2.0 / (w2 - 1.0))
    y = np.where(y == 0, 1.0, y)
    return delta * np.log(y / alpha + np.sqrt((y / alpha) ** 2 + 1.0))


def kurtosis_z(n: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """Anscombe & Glynn's normal score of the sample excess kurtosis g2."""
    n = np.asarray(n, dtype=np.float64)
    b2 = g2 + 3.0
    mean = 3.0 * (n - 1) / (n + 1)
    var = 24.0 * n * (n - 2) * (n - 3) / ((n + 1) * (n + 1.0) * (n + 3) * (n + 5))
    x = (b2 - mean) / np.sqrt(var)
    sqrtbeta1 = 6.0 * (n * n - 5 * n + 2) / ((n + 7) * (n + 9)) * np.sqrt(
        6.0 * (n + 3) * (n + 5) / (n * (n - 2) * (n - 3)))
    a = 6.0 + 8.0 / sqrtbeta1 * (2.0 / sqrtbeta1 + np.sqrt(1 + 4.0 / sqrtbeta1 ** 2))
    term1 = 1 - 2 / (9.0 * a)
    denom = 1 + x * np.sqrt(2 / (a - 4.0))
    term2 = np.sign(denom) * np.where(denom == 0.0, np.nan,
                                      np.abs((1 - 2.0 / a) / np.where(denom == 0, 1, denom))
                                      ** (1 / 3))
    return (term1 - term2) / np.sqrt(2 / (9.0 * a))


def dagostino(n: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """K² = Z(g1)² + Z(g2)² and its chi²(2) p-value; NaN where n < 8."""
    with np.errstate(divide="ignore", invalid="ignore"):
        k2 = skew_z(n, g1) ** 2 + kurtosis_z(n, g2) ** 2
    k2 = np.where(np.asarray(n) >= MIN_N_DAGOSTINO, k2, np.nan)
    return k2, chdtrc(2.0, k2)


def jarque_bera(n: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JB = n/6 (g1² + g2²/4) and its asymptotic chi²(2) p-value."""
    jb = np.asarray(n, dtype=np.float64) / 6.0 * (g1 ** 2 + g2 ** 2 / 4.0)
    return jb, chdtrc(2.0, jb)


__all__ = ["dagostino", "jarque_bera", "kurtosis_z", "skew_z"]

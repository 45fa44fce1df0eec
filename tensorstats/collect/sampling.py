"""Fixed-position subsampling of huge tensors, and exact streaming moments.

When a channel holds more than ``max_elements`` values, a series keeps the
same random subset of element positions at every step (so trajectories are
comparable) and stores, next to it, exact moments of the *full* tensor, so
moments never depend on the subsample.
"""

from __future__ import annotations

import zlib

import numpy as np

MOMENT_NAMES = ("count", "nan_count", "inf_count", "mean", "m2", "m3", "m4", "min", "max")
"""Layout of the last axis of a ``moments`` row. ``m2``..``m4`` are central sums
``sum((x - mean)**k)`` over the finite values (so ``var = m2 / count``), which
merge exactly across chunks, steps or ranks (Chan et al.)."""


def sample_positions(size: int, max_elements: int, *, seed: int, key: str) -> np.ndarray:
    """Sorted positions of ``max_elements`` of ``size`` elements, fixed for a series.

    The generator is seeded from ``seed`` and the series ``key``, so the same
    series gets the same positions in every run with the same seed.

    Examples
    --------
    >>> p = sample_positions(10, 4, seed=0, key="feature/conv1")
    >>> len(p), bool(np.all(np.diff(p) > 0)), bool(p.max() < 10)
    (4, True, True)
    """
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    return np.sort(rng.choice(size, size=max_elements, replace=False)).astype(np.int64)


def channel_moments(flat: np.ndarray) -> np.ndarray:
    """Exact moments of each row of a 2-D array over its finite values.

    Parameters
    ----------
    flat
        ``(channels, elements)``, any real dtype.

    Returns
    -------
    ndarray
        ``(channels, len(MOMENT_NAMES))`` float64, columns as in
        :data:`MOMENT_NAMES`. Rows without finite values have NaN moments.

    Examples
    --------
    >>> m = channel_moments(np.array([[1.0, 2.0, 3.0, np.nan, np.inf]]))
    >>> dict(zip(MOMENT_NAMES, m[0].tolist()))["m2"]
    2.0
    """
    x = np.asarray(flat, dtype=np.float64)
    finite = np.isfinite(x)
    count = finite.sum(axis=1)
    nan_count = np.isnan(x).sum(axis=1)
    inf_count = x.shape[1] - count - nan_count
    with np.errstate(invalid="ignore", divide="ignore"):
        xf = np.where(finite, x, 0.0)
        mean = xf.sum(axis=1) / count
        d = np.where(finite, x - mean[:, None], 0.0)
        d2 = d * d
        m2 = d2.sum(axis=1)
        m3 = (d2 * d).sum(axis=1)
        m4 = (d2 * d2).sum(axis=1)
        lo = np.where(finite, x, np.inf).min(axis=1, initial=np.inf)
        hi = np.where(finite, x, -np.inf).max(axis=1, initial=-np.inf)
    empty = count == 0
    for col in (mean, m2, m3, m4, lo, hi):
        col[empty] = np.nan
    return np.stack([count, nan_count, inf_count, mean, m2, m3, m4, lo, hi],
                    axis=1).astype(np.float64)

"""Fixed-position subsampling of huge tensors, and exact streaming moments.

When a channel holds more than ``max_elements`` values, a series keeps the
same random subset of element positions at every step (so trajectories are
comparable) and stores, next to it, exact moments of the *full* tensor, so
moments never depend on the subsample.
"""

from __future__ import annotations

import zlib

import numpy as np

from ..kernels.moments import PARTIAL_FIELDS, partial_moments

MOMENT_NAMES = PARTIAL_FIELDS
"""Layout of the last axis of a stored ``moments`` row: the fields of a moments
partial (:data:`tensorstats.kernels.moments.PARTIAL_FIELDS`). ``m2``..``m4`` are
central sums ``sum((x - mean)**k)`` over the finite values (so ``var = m2 /
count``), which merge exactly across chunks, steps or ranks (Chan et al.)."""


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
    part = partial_moments(np.asarray(flat))
    out = np.stack([part[name] for name in MOMENT_NAMES], axis=1).astype(np.float64)
    out[part["count"] == 0, 3:] = np.nan  # the format stores NaN moments for empty rows
    return out

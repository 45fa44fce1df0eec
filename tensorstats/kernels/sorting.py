"""Sorting groups once: subsample, sort, and find each row's run of finite values.

Examples
--------
>>> import numpy as np
>>> x = np.array([[3.0, np.nan, -np.inf, 1.0, 2.0]])
>>> y, start, count, nan_count, inf_count = sorted_groups(x, None, None)
>>> y[0, start[0]:start[0] + count[0]].tolist(), int(nan_count[0]), int(inf_count[0])
([1.0, 2.0, 3.0], 1, 1)
"""

from __future__ import annotations

import numpy as np

from .scratch import scratch
from .subsample import take_subsample


def nonfinite_counts(x: np.ndarray, rows: np.ndarray | None = None
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


def sorted_groups(x: np.ndarray, keys: np.ndarray | None, max_samples: int | None,
                  name: str = "sorted") -> tuple[np.ndarray, ...]:
    """Subsample (if needed) and sort rows; locate each row's finite run.

    Returns ``(y, start, count, nan_count, inf_count)``: ``y`` is a per-thread
    scratch array (``name``), valid until the next call with that name on this thread.
    """
    g, width = x.shape
    if x.dtype.kind != "f" or x.dtype.itemsize < 4:
        x = x.astype(np.float64 if x.dtype.itemsize > 2 or x.dtype.kind != "f" else np.float32)
    counts = None
    if max_samples is not None and width > max_samples:
        counts = nonfinite_counts(x)
        x = take_subsample(x, keys, max_samples)
        width = max_samples
    y = scratch(name, x.shape, x.dtype)
    y[...] = x
    y.sort(axis=-1)
    all_finite = (y[:, 0] > -np.inf) & (y[:, -1] < np.inf)
    start = np.zeros(g, np.int64)
    count = np.full(g, width, np.int64)
    if not all_finite.all():
        rest = ~all_finite
        sub = y[rest]
        start[rest] = (sub == -np.inf).sum(axis=-1)
        count[rest] = np.isfinite(sub).sum(axis=-1)
    if counts is None:
        counts = nonfinite_counts(y, count < width)
    return y, start, count, *counts

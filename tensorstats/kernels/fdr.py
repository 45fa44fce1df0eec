"""Benjamini-Hochberg false-discovery-rate adjustment along the last axis.

NaN p-values (from degenerate groups) are left out: they are not tests, so
they neither count towards ``m`` nor get an adjusted value.

Examples
--------
>>> import numpy as np
>>> bh_adjust(np.array([0.01, 0.04, np.nan, 0.03]))
array([0.03, 0.04,  nan, 0.04])
"""

from __future__ import annotations

import math
import os

import numpy as np

from .blocks import map_threads
from .scratch import scratch

COMPILED_FROM = 4096
"""Rows with at least this many p-values are adjusted by the compiled kernel
(:mod:`.fdr_compiled`: a radix sort, 2.5x NumPy's argsort at 20,000), several
rows at once on threads; shorter rows stay in NumPy, which imports no numba."""


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of each row of ``p`` (last axis).

    Equal to ``statsmodels.stats.multitest.multipletests(p, method="fdr_bh")[1]``
    on the non-NaN entries of each row.
    """
    p = np.asarray(p, dtype=np.float64)
    flat = p.reshape(math.prod(p.shape[:-1]), p.shape[-1]) if p.ndim else p.reshape(1, 1)
    out = np.full(flat.shape, np.nan)
    pairs = list(zip(flat, out, strict=True))
    if flat.shape[1] >= COMPILED_FROM:
        if len(pairs) > 1:
            map_threads(_adjust_compiled, pairs, os.cpu_count() or 1)  # releases the GIL
        else:
            _adjust_compiled(pairs[0])
    else:
        for pair in pairs:
            _adjust_row(pair)
    return out.reshape(p.shape)


def _adjust_compiled(pair: tuple[np.ndarray, np.ndarray]) -> None:
    """:func:`_adjust_row` by the compiled kernel (NumPy for a row with a negative value)."""
    from .fdr_compiled import COUNTERS, adjust_row

    row, res = pair
    ok = ~np.isnan(row)
    m = int(ok.sum())
    if m == 0:
        return
    whole = m == len(row)
    vals = np.ascontiguousarray(row if whole else row[ok])
    done = res if whole and res.flags.c_contiguous else np.empty(m)
    if not adjust_row(vals, done, scratch("bh_keys", (2 * m,), np.uint64),
                      scratch("bh_order", (2 * m,), np.int64),
                      scratch("bh_count", (COUNTERS,), np.int64)):
        _adjust_row(pair)
    elif done is not res:
        res[ok] = done


def _adjust_row(pair: tuple[np.ndarray, np.ndarray]) -> None:
    """BH-adjust the p-values ``row`` into ``res`` (both 1-d; NaN left out).

    The NumPy path, for short rows; the reference of :mod:`.fdr_compiled`.
    """
    row, res = pair
    ok = ~np.isnan(row)
    m = int(ok.sum())
    if m == 0:
        return
    vals = row[ok]
    # Any order of tied p-values gives them the same adjusted value (the
    # running minimum from the top reaches the last of a tie first), so the
    # unstable sort is exact here, and twice as fast as the stable one.
    order = np.argsort(vals)
    scaled = vals[order] * (m / np.arange(1, m + 1))
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    back = np.empty(m)
    back[order] = np.minimum(adjusted, 1.0)
    res[ok] = back

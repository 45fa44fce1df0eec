"""Benjamini-Hochberg for long rows of p-values, compiled (numba, GIL released).

The cost of BH is the sort of the p-values. NumPy's ``argsort`` of 20,000
float64 values takes about 0.8 ms on the development VM, a tenth of a
``ts.normality`` call over 20,000 groups; a least-significant-digit radix
sort of their bits takes about 0.3 ms. Non-negative IEEE doubles order like
their bit patterns read as unsigned integers, so the radix sort of the bits
is the sort of the values (``-0.0`` is read as ``+0.0``); a row with a
negative value is left to the caller (:func:`adjust_row` returns False).

The arithmetic after the sort is that of the NumPy path in :mod:`.fdr`,
operation for operation, so both give the same bits (tested, and both
against statsmodels).

This module imports numba; :mod:`.fdr` imports it on first use only, for
rows of at least :data:`~tensorstats.kernels.fdr.COMPILED_FROM` p-values.
"""

from __future__ import annotations

import numba
import numpy as np

DIGIT_BITS = 11
"""Bits per radix digit: six passes cover 64 bits, with 2048 counters (16 KiB)."""
COUNTERS = (1 << DIGIT_BITS) + 1
"""Length of the counting array a radix pass needs."""
_MASK = np.uint64((1 << DIGIT_BITS) - 1)


@numba.njit(nogil=True, cache=True)
def _radix_order(keys: np.ndarray, keys_b: np.ndarray, order: np.ndarray, order_b: np.ndarray,
                 count: np.ndarray) -> np.ndarray:
    """Positions that sort ``keys`` (uint64) ascending; stable.

    ``keys_b``, ``order`` and ``order_b`` (int64) are work arrays of the same
    length, ``count`` one of ``2**DIGIT_BITS + 1``; ``keys`` is overwritten.
    Passes where every key has the same digit are skipped (p-values share
    their top exponent bits). Returns ``order`` or ``order_b``.
    """
    m = keys.shape[0]
    for i in range(m):
        order[i] = i
    for shift in range(0, 64, DIGIT_BITS):
        s = np.uint64(shift)
        count[:] = 0
        for i in range(m):
            count[((keys[i] >> s) & _MASK) + 1] += 1
        if count.max() == m:
            continue
        for d in range(1 << DIGIT_BITS):
            count[d + 1] += count[d]
        for i in range(m):
            d = (keys[i] >> s) & _MASK
            at = count[d]
            keys_b[at] = keys[i]
            order_b[at] = order[i]
            count[d] = at + 1
        keys, keys_b = keys_b, keys
        order, order_b = order_b, order
    return order


@numba.njit(nogil=True, cache=True)
def adjust_row(vals: np.ndarray, out: np.ndarray, work_keys: np.ndarray, work_order: np.ndarray,
               count: np.ndarray) -> bool:
    """BH-adjusted ``vals`` (float64, no NaN) into ``out``; False (``out`` untouched)
    if a value is negative.

    ``work_keys`` (uint64) and ``work_order`` (int64) hold at least twice
    ``len(vals)``, ``count`` (int64) :data:`COUNTERS`: the caller's reused
    buffers (fresh ones every call cost as much again in page faults).
    """
    m = vals.shape[0]
    keys = work_keys[:m]
    for i in range(m):
        v = vals[i] + 0.0  # -0.0 -> +0.0
        if v < 0.0:
            return False
        keys[i] = np.float64(v).view(np.uint64)
    order = _radix_order(keys, work_keys[m:2 * m], work_order[:m], work_order[m:2 * m], count)
    running = np.inf
    for k in range(m - 1, -1, -1):
        scaled = vals[order[k]] * (m / (k + 1.0))
        if scaled < running:
            running = scaled
        out[order[k]] = running if running < 1.0 else 1.0
    return True

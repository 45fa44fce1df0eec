"""The compiled moments kernel: one pass per group over any strided layout, GIL released.

:func:`partials` computes, for every group of a strided view, the
fields of a moments partial (see :data:`~tensorstats.kernels.moments.PARTIAL_FIELDS`)
in one read of the values: count, NaN and Inf counts, min, max and the sums of
powers 1-4 about a shift close to the group's mean (its first value), turned
into the centred sums at the end. float32 and float64 are read as they are
(no cast copy); values are promoted to float64 one at a time.

Exactness: a group whose mean is far from the shift relative to its spread
(``(mean - shift)² n > max_offset2 · m2``, see
:data:`~tensorstats.kernels.moments.RAW_SUMS_MAX_OFFSET`) is summed a second time about
its mean, as the NumPy kernel did, so data such as ``1e7 + 0.1 * noise`` keeps
full precision. A group holding NaN or Inf is summed again with a test per
value (the fast pass has none; its sums show the non-finite value).

The layout: groups are ``(A, G)`` and each group's values ``(O, I)``, with
strides in elements (``I`` values contiguous), over a 1-D buffer that spans
the view. The Python side
(:mod:`~tensorstats.kernels.moments`) finds such a view without copying where
the strides allow. This module imports numba; it is imported on first use
only, and the kernel is compiled then or loaded from numba's on-disk cache.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# reassoc/contract let the sums vectorise; no "nnan"/"ninf": NaN and Inf must
# propagate into the fast pass's sums, which is how it sees them.
_jit = numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})


@_jit
def _first_finite(base, r0, O, I, so):  # noqa: E741 (layout names)
    for o in range(O):
        r = r0 + o * so
        for i in range(I):
            v = np.float64(base[r + i])
            if math.isfinite(v):
                return v
    return 0.0


@_jit
def _fast_sums(base, bits, sign, low, r0, O, I, so, k):  # noqa: E741
    """Σ(x-k)^p, p = 1..4, and the order keys of the min and max; no test per value.

    The min and max are taken over integer keys of the values' bits: the
    bits with every bit but the sign (``low``) flipped for negative values
    order as the values do, and integer min/max reductions vectorise where
    float ones, which must respect NaN, do not. ``sign`` is the sign bit's
    position (31 or 63); see :func:`~tensorstats.kernels.moments.key_values`.
    """
    s1 = s2 = s3 = s4 = 0.0
    lo = hi = bits[r0] ^ ((bits[r0] >> sign) & low)
    for o in range(O):
        r = r0 + o * so
        row = base[r:r + I]  # slices: indices known non-negative, so the loop vectorises
        row_bits = bits[r:r + I]
        for i in range(I):
            v = np.float64(row[i]) - k
            v2 = v * v
            s1 += v
            s2 += v2
            s3 += v2 * v
            s4 += v2 * v2
            b = row_bits[i]
            key = b ^ ((b >> sign) & low)
            lo = min(lo, key)
            hi = max(hi, key)
    return s1, s2, s3, s4, lo, hi


@_jit
def _masked_sums(base, bits, sign, low, r0, O, I, so, k):  # noqa: E741
    """As :func:`_fast_sums` over the finite values only, with their count and the NaNs'."""
    s1 = s2 = s3 = s4 = 0.0
    lo = low  # the largest key; ~low the smallest
    hi = ~low
    n = nan = 0
    for o in range(O):
        r = r0 + o * so
        for i in range(I):
            x = np.float64(base[r + i])
            if math.isfinite(x):
                v = x - k
                v2 = v * v
                s1 += v
                s2 += v2
                s3 += v2 * v
                s4 += v2 * v2
                b = bits[r + i]
                key = b ^ ((b >> sign) & low)
                lo = min(lo, key)
                hi = max(hi, key)
                n += 1
            elif math.isnan(x):
                nan += 1
    return s1, s2, s3, s4, lo, hi, n, nan


@_jit
def _central(n, s1, s2, s3, s4):
    """(mean offset d, m2, m3, m4) from power sums about a shift."""
    if n == 0:
        return 0.0, 0.0, 0.0, 0.0
    d = s1 / n
    d2 = d * d
    m2 = max(s2 - d * s1, 0.0)
    m3 = s3 - 3.0 * d * s2 + 2.0 * d2 * s1
    m4 = max(s4 - 4.0 * d * s3 + 6.0 * d2 * s2 - 3.0 * d2 * d * s1, 0.0)
    return d, m2, m3, m4


@_jit
def _group(base, bits, sign, low, r0, O, I, so, ints, q, floats, max_offset2):  # noqa: E741
    total = O * I
    k = np.float64(base[r0])
    s1, s2, s3, s4, lo, hi = _fast_sums(base, bits, sign, low, r0, O, I, so, k)
    clean = math.isfinite(s1) and math.isfinite(s2) and math.isfinite(s3) and math.isfinite(s4)
    n = total
    nan = 0
    if not clean:
        k = _first_finite(base, r0, O, I, so)
        s1, s2, s3, s4, lo, hi, n, nan = _masked_sums(base, bits, sign, low, r0, O, I, so, k)
    d, m2, m3, m4 = _central(n, s1, s2, s3, s4)
    if n > 0 and lo == hi:  # constant (same bits): exact whatever the shift
        d, m2, m3, m4 = 0.0, 0.0, 0.0, 0.0
        k = np.float64(base[r0]) if clean else _first_finite(base, r0, O, I, so)
    elif n > 0 and not d * d * n <= max_offset2 * m2:
        k = k + d
        if clean:
            s1, s2, s3, s4, lo, hi = _fast_sums(base, bits, sign, low, r0, O, I, so, k)
        else:
            s1, s2, s3, s4, lo, hi, n, nan = _masked_sums(base, bits, sign, low, r0, O, I, so,
                                                          k)
        d, m2, m3, m4 = _central(n, s1, s2, s3, s4)
    ints[q, 0] = n
    ints[q, 1] = nan
    ints[q, 2] = total - n - nan
    ints[q, 3] = lo
    ints[q, 4] = hi
    floats[q, 0] = k + d if n > 0 else 0.0
    floats[q, 1] = m2
    floats[q, 2] = m3
    floats[q, 3] = m4


@_jit
def partials(base, bits, layout, q0, q1, ints, floats, max_offset2):
    """Groups q0..q1 (flat over (A, G)) of the view described by ``layout``.

    ``base`` is the float32 or float64 buffer, ``bits`` the same memory as
    integers of its size; ``layout`` = (G, O, I, sa, sg, so): sizes and
    element strides (each group's innermost ``I`` values are contiguous).
    Writes count, NaN count, Inf count and the min and max keys to
    ``ints[q]``, and the mean and m2-m4 to ``floats[q]``.
    """
    sign = bits.itemsize * 8 - 1
    low = (np.int64(1) << sign) - 1
    G, O, I, sa, sg, so = (layout[0], layout[1], layout[2], layout[3],  # noqa: E741
                           layout[4], layout[5])
    for q in range(q0, q1):
        a = q // G
        g = q - a * G
        _group(base, bits, sign, low, a * sa + g * sg, O, I, so, ints, q, floats, max_offset2)



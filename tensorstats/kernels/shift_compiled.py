"""The compiled shift kernel: every metric of a pair of sorted samples in one merge walk.

:func:`pair_metrics` takes, for every group, the sorted finite values of the
sample ``x`` (n values) and of its reference ``r`` (m values), float32 or
float64 as they are (no cast copy), and walks the two-pointer merge of the
two once. With ``d = n m (F - G)``, an exact integer that grows by ``m`` at
each value of ``x`` and falls by ``n`` at each value of ``r``:

* W1 = ∫ |F - G| = Σ |d| (v' - v) / (n m) and energy = sqrt(2 ∫ (F - G)²),
  summed over consecutive pooled values v ≤ v' (tied values add nothing);
* KS = max |d| / (n m) over the states after a run of tied values (taken
  where the next pooled value is larger), as :func:`scipy.stats.ks_2samp`.

The merge is a chain of dependent loads (each step's comparison picks the
next address), so the pooled order up to where one sample runs out is split
into quarters, each walked from where a binary search places its first
position, the four walks interleaved in one loop (about 2x one walk); the
rest, one sample alone, is a plain loop.

JS and Hellinger need the counts of each sample up to a few edges (the
pooled quantiles, and each sample's range; see :mod:`~tensorstats.kernels.shift`);
each edge's pooled value is found by a binary search (started from the
previous edge's) and its counts by a galloping search, never by the walk.

With only ``wasserstein`` asked and ``n == m``, W1 is the mean of
``|x_(i) - r_(i)|`` instead (no merge). Sums are float64; ``d`` is kept as
a float64 integer, exact while ``n m < 2**53``.

This module imports numba; it is imported on first use only, and the
kernel is compiled then or loaded from numba's on-disk cache.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# reassoc/contract let the sums vectorise and interleave; no "nnan"/"ninf".
_jit = numba.njit(nogil=True, cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
# JS/Hellinger: few terms, and identical samples must give exactly 0, which a
# reciprocal in place of p / mid (arcp) would not.
_exact = numba.njit(nogil=True, cache=True)

_MAX_EDGES = 127 + 4
"""Bin edges per pair at most: B - 1 quantiles (B <= 128) and four range edges."""

COLUMNS = ("wasserstein", "energy", "ks", "js", "hellinger")
"""The columns of :func:`pair_metrics`'s output, in order."""


@_jit
def _corank(x, r, k, lo, hi):
    """How many of the first ``k`` pooled values come from ``x`` (x first among ties).

    The answer lies in ``[lo, hi]``; callers pass ``lo >= max(0, k - m)`` and
    ``hi <= min(k, n)``. Binary search for the first ``i`` with ``x[i] > r[k - i - 1]``.
    """
    while lo < hi:
        mid = (lo + hi) >> 1
        if x[np.uint64(mid)] <= r[np.uint64(k - mid - 1)]:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def _count_le(z, v, lo):
    """How many values of sorted ``z`` are ``<= v``, knowing ``z[:lo]`` are (galloping)."""
    size = z.size
    step = 1
    hi = lo
    while hi < size and z[np.uint64(hi)] <= v:
        lo = hi + 1
        hi = lo + step
        step <<= 1
    hi = min(hi, size)
    while lo < hi:
        mid = (lo + hi) >> 1
        if z[np.uint64(mid)] <= v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def _count_lt(z, v):
    """How many values of sorted ``z`` are ``< v``."""
    lo = 0
    hi = z.size
    while lo < hi:
        mid = (lo + hi) >> 1
        if z[np.uint64(mid)] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit
def _both_sides(x, r):
    """Length of the merged prefix that ends with the first sample used up."""
    n, m = x.size, r.size
    if x[n - 1] <= r[m - 1]:  # x runs out first (x goes first among ties)
        return n + _count_lt(r, np.float64(x[n - 1]))
    return m + _count_le(x, np.float64(r[m - 1]), 0)  # r runs out first


@_jit
def _last_merged(x, r, i, j):
    """The largest of the first ``i`` values of ``x`` and ``j`` of ``r`` (i + j > 0)."""
    if i == 0:
        return np.float64(r[j - 1])
    if j == 0:
        return np.float64(x[i - 1])
    return max(np.float64(x[i - 1]), np.float64(r[j - 1]))


@_jit
def _start(x, r, p):
    """State of a walk starting at pooled position ``p``: (i, j, d, previous value)."""
    n, m = x.size, r.size
    i = _corank(x, r, p, max(0, p - m), min(p, n))
    j = p - i
    if i == 0 and j == 0:
        prev = min(np.float64(x[0]), np.float64(r[0]))  # any finite value: d is 0
    else:
        prev = _last_merged(x, r, i, j)
    return i, j, np.float64(i * m - j * n), prev


@_jit
def _step(x, r, i, j, d, prev, w, e, ks, m, mn, inv):
    """One pooled value of a walk: take the smaller head, add its interval, move ``d``."""
    a = x[np.uint64(i)]
    b = r[np.uint64(j)]
    take_x = a <= b
    v = np.float64(min(a, b))
    dv = v - prev
    ad = abs(d)
    f = ad * inv
    w += f * dv
    e += f * f * dv
    ks = max(ks, ad if dv > 0.0 else 0.0)  # after a run of ties: the next value is larger
    d += m if take_x else mn
    i += take_x
    j += not take_x
    return i, j, d, v, w, e, ks


@_jit
def _steps(x, r, count, i, j, d, prev, w, e, ks, m, mn, inv):
    """``count`` steps of one walk."""
    for _ in range(count):
        i, j, d, prev, w, e, ks = _step(x, r, i, j, d, prev, w, e, ks, m, mn, inv)
    return i, j, d, prev, w, e, ks


@_jit
def _tail(z, k0, d, delta, prev, w, e, ks, inv):
    """The rest of one sample, ``z[k0:]``, once the other is used up (``d`` moves by ``delta``)."""
    rest = z[k0:]
    for t in range(rest.size):
        v = np.float64(rest[t])
        dv = v - prev
        ad = abs(d + t * delta)
        f = ad * inv
        w += f * dv
        e += f * f * dv
        ks = max(ks, ad if dv > 0.0 else 0.0)
        prev = v
    return w, e, ks


@_jit
def _walk(x, r):
    """(Σ |F - G| dv, Σ (F - G)² dv, max |d|) of sorted non-empty ``x`` and ``r``."""
    n, m = x.size, r.size
    fm, mn, inv = np.float64(m), -np.float64(n), 1.0 / (np.float64(n) * np.float64(m))
    end = _both_sides(x, r)
    # 0 * end: an int64 like the others, not a literal (one compiled _start, not two)
    p0, p1, p2, p3 = 0 * end, end // 4, end // 2, (3 * end) // 4
    i0, j0, d0, v0 = _start(x, r, p0)
    i1, j1, d1, v1 = _start(x, r, p1)
    i2, j2, d2, v2 = _start(x, r, p2)
    i3, j3, d3, v3 = _start(x, r, p3)
    w0 = w1 = w2 = w3 = e0 = e1 = e2 = e3 = k0 = k1 = k2 = k3 = 0.0
    common = min(p1, p2 - p1, p3 - p2, end - p3)
    for _ in range(common):  # four independent chains of loads, interleaved
        i0, j0, d0, v0, w0, e0, k0 = _step(x, r, i0, j0, d0, v0, w0, e0, k0, fm, mn, inv)
        i1, j1, d1, v1, w1, e1, k1 = _step(x, r, i1, j1, d1, v1, w1, e1, k1, fm, mn, inv)
        i2, j2, d2, v2, w2, e2, k2 = _step(x, r, i2, j2, d2, v2, w2, e2, k2, fm, mn, inv)
        i3, j3, d3, v3, w3, e3, k3 = _step(x, r, i3, j3, d3, v3, w3, e3, k3, fm, mn, inv)
    _, _, _, _, w0, e0, k0 = _steps(x, r, p1 - common, i0, j0, d0, v0, w0, e0, k0, fm, mn, inv)
    _, _, _, _, w1, e1, k1 = _steps(x, r, p2 - p1 - common, i1, j1, d1, v1, w1, e1, k1, fm, mn,
                                    inv)
    _, _, _, _, w2, e2, k2 = _steps(x, r, p3 - p2 - common, i2, j2, d2, v2, w2, e2, k2, fm, mn,
                                    inv)
    i3, j3, d3, v3, w3, e3, k3 = _steps(x, r, end - p3 - common, i3, j3, d3, v3, w3, e3, k3, fm,
                                        mn, inv)
    w, e, ks = w0 + w1 + w2 + w3, e0 + e1 + e2 + e3, max(k0, k1, k2, k3)
    if i3 < n:
        return _tail(x, i3, d3, fm, v3, w, e, ks, inv)
    return _tail(r, j3, d3, mn, v3, w, e, ks, inv)


@_jit
def _equal_size_w1(x, r):
    """W1 of sorted samples of one size: the mean ``|x_(i) - r_(i)|``."""
    s = 0.0
    for t in range(x.size):
        s += abs(np.float64(x[t]) - np.float64(r[t]))
    return s / x.size


@_jit
def _n_bins(n, m):
    """Number of shared bins, as :func:`~tensorstats.kernels.shift.n_bins`."""
    return min(128, max(2, math.ceil(math.sqrt(min(n, m)))))


@_jit
def _quantile_edges(x, r, cx, cr):
    """Counts of ``x`` and ``r`` up to each pooled quantile edge (after its tied values).

    Edge ``k`` is the pooled value at position ``(k total) // B - 1``; its
    counts are those of values ``<=`` it. Each search starts from the last.
    Returns how many edges were written (``B - 1``).
    """
    n, m = x.size, r.size
    total = n + m
    b = _n_bins(n, m)
    i = 0
    j = 0
    for k in range(1, b):
        p = (k * total) // b  # the first p pooled values end at this edge's value
        i = _corank(x, r, p, max(i, p - m), min(n, p - j))
        j = p - i
        v = _last_merged(x, r, i, j)
        cx[k - 1] = _count_le(x, v, i)
        cr[k - 1] = _count_le(r, v, j)
    return b - 1


@_jit
def _range_edges(x, r, cx, cr, at):
    """Append the four range edges at ``at``: each sample's maximum, and just below each minimum.

    Below a minimum lie only the other sample's values (none: an edge at 0, an empty bin).
    """
    n, m = x.size, r.size
    cx[at], cr[at] = n, _count_le(r, np.float64(x[n - 1]), 0)
    cx[at + 1], cr[at + 1] = _count_le(x, np.float64(r[m - 1]), 0), m
    cx[at + 2], cr[at + 2] = 0, _count_lt(r, np.float64(x[0]))
    cx[at + 3], cr[at + 3] = _count_lt(x, np.float64(r[0])), 0
    return at + 4


@_jit
def _sort_edges(cx, cr, count):
    """Insertion sort of the first ``count`` edges by pooled position (all but four are sorted)."""
    for k in range(1, count):
        a, b = cx[k], cr[k]
        t = k
        while t > 0 and cx[t - 1] + cr[t - 1] > a + b:
            cx[t], cr[t] = cx[t - 1], cr[t - 1]
            t -= 1
        cx[t], cr[t] = a, b


@_exact
def _js_hellinger(cx, cr, count, n, m):
    """JS divergence (bits) and Hellinger distance of the bins between sorted edges."""
    js = 0.0
    bc = 0.0
    px = 0
    pr = 0
    for k in range(count + 1):
        ex, er = (cx[k], cr[k]) if k < count else (n, m)
        p = (ex - px) / n
        q = (er - pr) / m
        px, pr = ex, er
        mid = 0.5 * (p + q)
        if p > 0.0:
            js += p * math.log(p / mid)
        if q > 0.0:
            js += q * math.log(q / mid)
        bc += math.sqrt(p * q)
    return 0.5 * js / math.log(2.0), math.sqrt(max(1.0 - bc, 0.0))


@_jit
def _bins(x, r, cx, cr):
    """(JS, Hellinger) of sorted non-empty ``x`` and ``r`` on the shared edges."""
    count = _range_edges(x, r, cx, cr, _quantile_edges(x, r, cx, cr))
    _sort_edges(cx, cr, count)
    return _js_hellinger(cx, cr, count, x.size, r.size)


@_jit
def _pair(x, r, walk, bins, w1_only, cx, cr, out):
    """Write the requested metrics of one pair of sorted non-empty samples to ``out``."""
    n, m = x.size, r.size
    if w1_only and n == m:
        out[0] = _equal_size_w1(x, r)
    elif walk:
        w, e, ks = _walk(x, r)
        out[0] = w
        out[1] = math.sqrt(2.0 * e)
        out[2] = ks / (np.float64(n) * np.float64(m))
    if bins:
        out[3], out[4] = _bins(x, r, cx, cr)


@_jit
def pair_metrics(xs, x0, nx, rs, r_rows, r0, nr, walk, bins, w1_only, out):
    """Metrics of every pair: row ``q`` of ``xs`` against row ``r_rows[q]`` of ``rs``.

    Parameters
    ----------
    xs, rs : 2-D float32 or float64, C-contiguous
        Sorted rows; pair ``q`` uses ``xs[q, x0[q]:x0[q] + nx[q]]`` and
        ``rs[r_rows[q], r0[q]:r0[q] + nr[q]]`` (their finite values).
    x0, nx, r_rows, r0, nr : 1-D int64
        One entry per pair.
    walk, bins, w1_only : bool
        Compute W1, energy and KS (the merge walk); JS and Hellinger; only
        W1 was asked (equal sizes then skip the merge).
    out : 2-D float64, (pairs, 5)
        Columns :data:`COLUMNS`; pairs with an empty side get NaN, columns not
        asked for are left as they are.
    """
    cx = np.empty(_MAX_EDGES, np.int64)
    cr = np.empty(_MAX_EDGES, np.int64)
    for q in range(xs.shape[0]):
        n, m = nx[q], nr[q]
        if n == 0 or m == 0:
            out[q, :] = np.nan
            continue
        x = xs[q, x0[q]:x0[q] + n]
        r = rs[r_rows[q], r0[q]:r0[q] + m]
        _pair(x, r, walk, bins, w1_only, cx, cr, out[q])

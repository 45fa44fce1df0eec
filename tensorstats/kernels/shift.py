"""Distances between two samples per group: W1, KS (+ p-value), energy, JS, Hellinger.

Each group's sample and reference are subsampled above ``max_samples`` and
sorted once; a compiled kernel (:mod:`~tensorstats.kernels.shift_compiled`,
numba, GIL released, float32 read as it is) then walks the merge of the two
sorted runs once per pair and accumulates every requested metric:

* ``wasserstein`` (W1) = ∫ |F - G| and ``energy`` = sqrt(2 ∫ (F - G)²), both
  as :func:`scipy.stats.wasserstein_distance` / :func:`scipy.stats.energy_distance`;
  with equal sizes and W1 alone, W1 is the mean absolute difference of order
  statistics (no merge);
* ``ks`` = max |F - G| over the pooled values, after all tied values, as
  :func:`scipy.stats.ks_2samp`, and ``ks_pvalue`` with scipy's methods
  (``"auto"``: exact up to 10,000 values per sample, else Smirnov's
  asymptotic distribution), computed once per distinct statistic;
* ``js`` (Jensen-Shannon divergence, bits) and ``hellinger`` on shared
  equal-mass bins: the ``B``-quantiles of the pooled sample, ``B =
  ceil(sqrt(min(n, m)))`` clipped to [2, 128], plus an edge at each sample's
  largest value and just before each sample's smallest, so identical samples
  give 0 and disjoint supports exactly 1 bit; an edge is placed after all
  values equal to it, so ties never straddle a bin edge (tied or repeated
  edges give empty bins, which contribute nothing).

The NumPy merge path the kernel replaced (:func:`_merge`,
:func:`_merged_metrics`) stays as the tests' second reference.

Examples
--------
>>> import numpy as np, scipy.stats
>>> rng = np.random.default_rng(0)
>>> x, r = rng.normal(size=(2, 300)), rng.normal(0.5, 1, size=(2, 200))
>>> out = shift_kernel(x, r, metrics=("wasserstein", "ks"))
>>> bool(np.isclose(out["wasserstein"][1], scipy.stats.wasserstein_distance(x[1], r[1])))
True
>>> bool(np.isclose(out["ks_pvalue"][0], scipy.stats.ks_2samp(x[0], r[0]).pvalue))
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy.special import gammaln, rel_entr

from .blocks import map_row_blocks, rows_per_block
from .choices import check_choices
from .scratch import scratch
from .sorting import sorted_groups

METRICS = ("wasserstein", "ks", "energy", "js", "hellinger")
"""Metric names :func:`shift_kernel` accepts."""

KS_METHODS = ("auto", "exact", "asymp")
MAX_EXACT_N = 10000
"""``ks_method="auto"`` is exact up to this many values per sample (as scipy)."""


def check_metrics(metrics: Sequence[str] | str) -> tuple[str, ...]:
    """Validate metric names; a single string is one metric."""
    return check_choices(metrics, METRICS, argument="metrics", kind="shift metric")


def output_names(metrics: Sequence[str]) -> tuple[str, ...]:
    """Result variables for ``metrics``: each metric, ``ks_pvalue`` after ``ks``."""
    out = []
    for m in metrics:
        out.append(m)
        if m == "ks":
            out.append("ks_pvalue")
    return (*out, "n", "n_reference")


def n_bins(n: int, m: int) -> int:
    """Number of shared equal-mass bins for ``js`` and ``hellinger``."""
    return int(min(128, max(2, math.ceil(math.sqrt(min(n, m))))))


@lru_cache(maxsize=65536)
def _ks_exact(h: int, n: int, m: int) -> float:
    """scipy's exact two-sided p-value of ``D = h / lcm(n, m)`` (NaN if it fails).

    Cached: the statistic takes few distinct values, and the exact
    computation is a Python loop over the lattice.
    """
    try:
        from scipy.stats._stats_py import _attempt_exact_2kssamp
    except ImportError:  # pragma: no cover - scipy moved it; fall back to asymptotic
        return math.nan
    lcm = n // math.gcd(n, m) * m
    with np.errstate(all="ignore"):
        ok, _, p = _attempt_exact_2kssamp(n, m, math.gcd(n, m), h / lcm, "two-sided")
    return float(p) if ok else math.nan


def ks_exact_equal_n(h: np.ndarray, n: int) -> np.ndarray:
    """Exact two-sided P(D >= h/n) for two samples of size ``n``, for many ``h`` at once.

    The alternating series of binomial ratios scipy evaluates with a Horner
    scheme (``P = 2 A_0 (1 - A_1 (1 - A_2 (...))))``, ``A_k = prod_j (n - kh -
    j) / (n + kh + j + 1)``), vectorized over ``h`` with log-gamma products.

    Examples
    --------
    >>> import scipy.stats
    >>> x, y = np.arange(10.0), np.arange(10.0) + 3.5
    >>> d = scipy.stats.ks_2samp(x, y, method="exact")
    >>> bool(np.isclose(ks_exact_equal_n(np.array([round(d.statistic * 10)]), 10)[0], d.pvalue))
    True
    """
    h = np.asarray(h, dtype=np.float64)
    out = np.ones(h.shape)
    pos = h > 0
    hp = h[pos]
    if hp.size == 0:
        return out
    kmax = np.floor(n / hp)
    p = np.zeros(hp.shape)
    for k in range(int(kmax.max()), -1, -1):
        a = n - k * hp
        alive = (k <= kmax) & (a >= hp)
        with np.errstate(invalid="ignore", over="ignore"):
            log_a = (gammaln(a + 1) - gammaln(a - hp + 1) + gammaln(n + k * hp + 1)
                     - gammaln(n + k * hp + hp + 1))
            factor = np.where(alive, np.exp(log_a), 0.0)
        p = np.where(k <= kmax, factor * (1.0 - p), p)
    out[pos] = np.clip(2.0 * p, 0.0, 1.0)
    return out


def ks_pvalue(d: np.ndarray, n: int, m: int, method: str = "auto") -> np.ndarray:
    """Two-sided p-values of KS statistics ``d`` for samples of sizes ``n`` and ``m``.

    ``method`` as :func:`scipy.stats.ks_2samp`: ``"exact"`` (lattice-path
    counting), ``"asymp"`` (Smirnov: ``kstwo.sf(d, round(n m / (n + m)))``) or
    ``"auto"`` (exact when both sizes are at most 10,000). An exact
    computation that fails numerically falls back to the asymptotic value,
    as scipy does. Evaluated once per distinct statistic.
    """
    d = np.asarray(d, dtype=np.float64)
    out = np.full(d.shape, np.nan)
    ok = np.isfinite(d)
    if not ok.any():
        return out
    g = math.gcd(n, m)
    if method == "auto":
        method = "exact" if max(n, m) <= MAX_EXACT_N else "asymp"
    elif method == "exact" and n // g >= np.iinfo(np.int32).max / (m // g):
        method = "asymp"  # scipy's rule: the lattice would be too large
    lcm = n // math.gcd(n, m) * m
    h = np.rint(d[ok] * lcm)
    uniq, inverse = np.unique(h, return_inverse=True)
    d_uniq = uniq / lcm
    p = np.full(uniq.shape, np.nan)
    if method == "exact" and n == m:
        p = ks_exact_equal_n(uniq, n)
        # Where p is within rounding of 1, scipy's own sum may exceed 1, which makes
        # scipy fall back to the asymptotic value; ask its routine there to agree.
        edge = (p > 1.0 - 1e-9) & (uniq > 0)
        p[edge] = [_ks_exact(int(v), n, m) for v in uniq[edge]]
    elif method == "exact":
        p = np.array([_ks_exact(int(v), n, m) for v in uniq])
    big, small = max(n, m), min(n, m)
    todo = np.isnan(p)
    if todo.any():
        from scipy import stats  # here: scipy.stats takes 0.3 s to import

        p[todo] = stats.kstwo.sf(d_uniq[todo], np.round(big * small / (big + small)))
    out[ok] = np.clip(p[inverse.reshape(-1)], 0.0, 1.0)
    return out


_TAG = np.uint64(1)


def _merge(xs: np.ndarray, rs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled sorted values (float64) of each row, and which came from ``xs``.

    float32 data carries its origin in the lowest mantissa bit of its float64
    copy, which a float32 value never uses: one in-place sort then merges the
    rows (tagging moves a value by far less than the gap to any other float32
    value, so the order of distinct values is kept; tied values may come in
    either order, which no metric depends on). Other dtypes take a stable
    argsort, a linear merge of the two sorted runs.
    """
    g, n = xs.shape
    total = n + rs.shape[1]
    if xs.dtype == np.float32 and rs.dtype == np.float32:
        both = scratch("shift.both64", (g, total), np.float64)
        both[:, :n] = xs
        both[:, n:] = rs
        bits = both.view(np.uint64)
        bits[:, n:] |= _TAG
        both.sort(axis=-1)
        from_x = (bits & _TAG) == 0
        bits &= ~_TAG
        return both, from_x
    both = scratch("shift.both", (g, total), np.result_type(xs, rs))
    both[:, :n] = xs
    both[:, n:] = rs
    order = np.argsort(both, axis=-1, kind="stable")
    return np.take_along_axis(both, order, axis=-1).astype(np.float64), order < n


def _merged_metrics(xs: np.ndarray, rs: np.ndarray, metrics: tuple[str, ...]) -> dict:
    """Every requested metric of sorted finite rows ``xs`` (g, n) and ``rs`` (g, m), in NumPy.

    The reference the compiled kernel is tested against (no longer on the
    path of :func:`shift_kernel`): one merge by sorting, then cumulative
    counts, vectorised over rows of one size.
    """
    g, n = xs.shape
    m = rs.shape[1]
    total = n + m
    v, from_x = _merge(xs, rs)
    cx = np.cumsum(from_x, axis=-1)
    pos = np.arange(1, total + 1)
    # (F - G) * n * m after each pooled value, exactly, in integers
    scaled = cx * total - pos * n
    out = {}
    need_cdf = {"wasserstein", "energy"} & set(metrics)
    if need_cdf:
        deltas = np.diff(v, axis=-1)
        inner = scaled[:, :-1] / (n * m)
        if "wasserstein" in metrics:
            out["wasserstein"] = np.einsum("ij,ij->i", np.abs(inner), deltas)
        if "energy" in metrics:
            out["energy"] = np.sqrt(2.0 * np.einsum("ij,ij->i", inner * inner, deltas))
    ends = np.ones(v.shape, bool)
    ends[:, :-1] = v[:, 1:] != v[:, :-1]  # last of a run of tied values
    if "ks" in metrics:
        out["ks"] = np.where(ends, np.abs(scaled), 0).max(axis=-1) / (n * m)
    if {"js", "hellinger"} & set(metrics):
        b = n_bins(n, m)
        ranks = np.broadcast_to((np.arange(1, b) * total) // b - 1, (g, b - 1))
        # index of the end of each value's tie run: next `ends` position at or after it
        idx = np.where(ends, pos - 1, total)
        run_end = np.minimum.accumulate(idx[:, ::-1], axis=-1)[:, ::-1]
        at = np.sort(np.concatenate([run_end[np.arange(g)[:, None], ranks],
                                     _range_edges(xs, rs, total)], axis=-1), axis=-1)
        cum_x = np.concatenate([np.zeros((g, 1)), np.take_along_axis(cx, at, axis=-1),
                                np.full((g, 1), n)], axis=-1)
        cum_r = np.concatenate([np.zeros((g, 1)), at + 1 - np.take_along_axis(cx, at, axis=-1),
                                np.full((g, 1), m)], axis=-1)
        p = np.diff(cum_x, axis=-1) / n
        q = np.diff(cum_r, axis=-1) / m
        if "js" in metrics:
            mid = 0.5 * (p + q)
            out["js"] = 0.5 * (rel_entr(p, mid) + rel_entr(q, mid)).sum(axis=-1) / math.log(2)
        if "hellinger" in metrics:
            out["hellinger"] = np.sqrt(np.maximum(1.0 - np.sqrt(p * q).sum(axis=-1), 0.0))
    return out


def _range_edges(xs: np.ndarray, rs: np.ndarray, total: int) -> np.ndarray:
    """Pooled positions of the extra JS edges, from the sorted rows ``xs`` and ``rs``.

    At the end of each sample's largest value's tie run, and just before the tie run
    of each sample's smallest (positions counted from the other sample's values below
    them). A part of the range that one sample covers alone is then never in a bin
    with the other sample's values: disjoint supports give exactly 1 bit. A position
    before the first value maps to the last (an empty bin).
    """
    n, m = xs.shape[1], rs.shape[1]
    out = np.stack([n + (rs <= xs[:, -1:]).sum(axis=-1) - 1,   # last of max(x)
                    m + (xs <= rs[:, -1:]).sum(axis=-1) - 1,   # last of max(r)
                    (rs < xs[:, :1]).sum(axis=-1) - 1,         # before min(x)
                    (xs < rs[:, :1]).sum(axis=-1) - 1], axis=-1)  # before min(r)
    return np.where(out < 0, total - 1, out)


def _sort_reference(r: np.ndarray, keys: np.ndarray | None, max_samples: int | None) -> dict:
    """Each reference group's values, subsampled and sorted once (kept, not scratch)."""
    rs, start, count, _, _ = sorted_groups(r, keys, max_samples, name="shift.r")
    return {"sorted": rs.copy(), "start": start, "count": count}


def _block(x: np.ndarray, ref_rows: np.ndarray, keys: np.ndarray | None, reference: dict,
           metrics: tuple[str, ...], max_samples: int | None) -> dict:
    """Metrics for a block of sample groups ``x`` against their (sorted) reference rows."""
    g = x.shape[0]
    out = {name: np.full(g, np.nan) for name in output_names(metrics)}
    width_r = (reference["values"] if "values" in reference else reference["sorted"]).shape[1]
    if x.shape[1] == 0 or width_r == 0:
        out["n"] = np.zeros(g, np.int64)
        out["n_reference"] = np.zeros(g, np.int64)
        return out
    xs, x0, nx, _, _ = sorted_groups(x, keys, max_samples, name="shift.x")
    if "values" in reference:  # one reference group per sample group: sort it here
        rk = None if reference["keys"] is None else reference["keys"][ref_rows]
        rs, r0, nr, _, _ = sorted_groups(reference["values"][ref_rows], rk, max_samples,
                                         name="shift.r")
        rows = np.arange(g)
    else:  # shared reference groups, sorted once, read in place
        rs, rows = reference["sorted"], np.ascontiguousarray(ref_rows, np.int64)
        r0, nr = reference["start"][rows], reference["count"][rows]
    out["n"], out["n_reference"] = nx, nr
    out.update(_compiled_metrics(xs, x0, nx, rs, rows, r0, nr, metrics))
    return out


def _compiled_metrics(xs: np.ndarray, x0: np.ndarray, nx: np.ndarray, rs: np.ndarray,
                      rows: np.ndarray, r0: np.ndarray, nr: np.ndarray,
                      metrics: tuple[str, ...]) -> dict:
    """``metrics`` of ``xs[q, x0:x0+nx]`` against ``rs[rows[q], r0:r0+nr]`` (sorted runs).

    One call of the compiled kernel (:mod:`~tensorstats.kernels.shift_compiled`,
    imported here so that numba is imported on first use only).
    """
    from .shift_compiled import COLUMNS, pair_metrics

    vals = np.full((xs.shape[0], len(COLUMNS)), np.nan)
    walk = bool({"wasserstein", "ks", "energy"} & set(metrics))
    bins = bool({"js", "hellinger"} & set(metrics))
    pair_metrics(_floats(xs), _ints(x0), _ints(nx), _floats(rs), _ints(rows), _ints(r0),
                 _ints(nr), walk, bins, metrics == ("wasserstein",), vals)
    return {name: vals[:, COLUMNS.index(name)] for name in metrics}


def _floats(a: np.ndarray) -> np.ndarray:
    """``a`` as it is if float32 or float64 (C order), else as float64."""
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float64
    return np.ascontiguousarray(a, dtype=dtype)


def _ints(a: np.ndarray) -> np.ndarray:
    """``a`` as contiguous int64 (one compiled signature for every caller)."""
    return np.ascontiguousarray(a, dtype=np.int64)


def shift_kernel(x: np.ndarray, r: np.ndarray, *,
                 metrics: Sequence[str] = ("wasserstein", "ks", "energy", "js"),
                 max_samples: int | None = None, keys: np.ndarray | None = None,
                 reference_keys: np.ndarray | None = None, ks_method: str = "auto",
                 threads: int | None = 1) -> dict:
    """Distances between the sample ``x`` and the reference ``r`` of every group.

    A reference group that several sample groups share (``r`` broadcast along
    some leading axes, as with ``reference="initial"``) is sorted once and
    never copied per sample group.

    Parameters
    ----------
    x, r : ndarray, shapes (..., N) and (..., M)
        Groups on the (broadcastable) leading axes, values on the last.
        Non-finite values are left out.
    metrics : sequence of str
        Any of :data:`METRICS`.
    max_samples : int or None
        Larger groups (each side) are subsampled to this many finite values.
    keys, reference_keys : ndarray of uint64, optional
        One subsampling key per sample group (leading shape of ``x``, or
        broadcastable to the groups) and per reference group (leading shape
        of ``r``); required when that side is subsampled.
    ks_method : {"auto", "exact", "asymp"}
        How ``ks_pvalue`` is computed (as :func:`scipy.stats.ks_2samp`).
    threads : int or None
        Worker threads over blocks of groups; None uses every CPU.

    Returns
    -------
    dict of ndarray
        One array per :func:`output_names` entry, over the leading axes.
    """
    metrics = check_metrics(metrics)
    if ks_method not in KS_METHODS:
        raise ValueError(f"ks_method must be one of {KS_METHODS}, got {ks_method!r}")
    x, r = np.asarray(x), np.asarray(r)
    lead = np.broadcast_shapes(x.shape[:-1], r.shape[:-1])
    x = np.broadcast_to(x, (*lead, x.shape[-1]))
    size = math.prod(lead)
    flat_x = x.reshape(size, x.shape[-1])
    n_ref = math.prod(r.shape[:-1])
    flat_r = r.reshape(n_ref, r.shape[-1])
    ref_rows = np.broadcast_to(np.arange(n_ref).reshape(r.shape[:-1]), lead).reshape(-1)

    def side_keys(k: np.ndarray | None, width: int, shape: tuple, side: str):
        if max_samples is None or width <= max_samples:
            return None
        if k is None:
            raise ValueError(f"{side} groups of {width} values exceed max_samples={max_samples}: "
                             "subsampling needs one key per group")
        return np.broadcast_to(np.asarray(k, np.uint64), shape).reshape(-1)

    keys = side_keys(keys, x.shape[-1], lead, "sample")
    rkeys = side_keys(reference_keys, r.shape[-1], r.shape[:-1], "reference")
    if n_ref == size:  # nothing shared: each block sorts its own reference rows
        reference = {"values": flat_r, "keys": rkeys}
    else:
        reference = map_row_blocks(lambda rb, kb: _sort_reference(rb, kb, max_samples), flat_r,
                                   rkeys, rows=rows_per_block(r.shape[-1]), threads=threads)
    out = map_row_blocks(
        lambda xb, ib, kb: _block(xb, ib, kb, reference, metrics, max_samples),
        flat_x, ref_rows, keys, rows=rows_per_block(x.shape[-1] + r.shape[-1]),
        threads=threads)
    if "ks" in metrics:  # once over all groups: p depends only on (statistic, n, m)
        valid = (out["n"] > 0) & (out["n_reference"] > 0)
        pairs = np.unique(np.stack([out["n"][valid], out["n_reference"][valid]], axis=1), axis=0)
        for n, m in pairs:
            rows = np.flatnonzero(valid & (out["n"] == n) & (out["n_reference"] == m))
            out["ks_pvalue"][rows] = ks_pvalue(out["ks"][rows], int(n), int(m), ks_method)
    return {name: val.reshape(lead) for name, val in out.items()}

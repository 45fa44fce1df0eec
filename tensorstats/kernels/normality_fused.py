"""The per-value work of the normality tests on sorted rows, fused and compiled.

:func:`fused_sums` makes, for every sorted row of finite values, at most two
passes over its values in compiled (numba) code that releases the GIL:

1. the float64 sums of powers of ``y - center``, Shapiro-Wilk's ``a @ y``
   and whether the row is constant;
2. only when the normal CDF is wanted (Anderson-Darling or the KS
   distance): the standardized values ``z = (y - center - mean) / sd``
   (ddof=1), and in the same loop Anderson-Darling's weighted sum of
   ``log Φ(z)`` and ``log Φ(-z)`` and the largest gap between the empirical
   CDF and Φ.

Rows with a ``center`` are first stored as ``y - center`` (float64, by NumPy):
the compiled code may reassociate ``(y - c) - mean`` into ``y - (c + mean)``
(fastmath), which would lose the digits the centre is there to keep
(1e7 + 0.1 * noise). Other rows are read as they are, float32 or float64.

Φ without a library call per value
----------------------------------
``math.erfc`` and ``math.log`` are scalar library calls in compiled code:
about 30 ns per value for Φ and two logs (measured), several times the sort.
Instead, on ``0 <= x < 8`` (``x = |z|``), ``log Φ(-x)``, ``log Φ(x)`` and
``Φ(-x)`` are each a polynomial of degree :data:`DEGREE` on pieces of width
:data:`PIECE_WIDTH`: the interpolants at the Chebyshev points of the second
kind, with coefficients computed in 40-digit arithmetic by
:func:`generate_pieces` and stored in :mod:`._normal_pieces`. Sorted rows
cross few pieces, so values are evaluated :data:`CHUNK` at a time against
one piece's coefficients (a chunk that straddles pieces is evaluated once
per piece, masked): vectorized multiply-adds, no table lookup per value
(gathers cost more than the polynomials on the development VM). Values with
``x >= 8`` take ``math.erfc`` and ``math.log``, with the asymptotic series
of ``log Φ(-x)`` beyond :data:`ASYMPTOTIC_FROM`, where ``erfc`` underflows
(the NumPy code this replaces gave A² = inf there; SciPy does not).

Error bound. Each function is analytic in a Bernstein ellipse ``E_ρ``
around each piece (``log Φ(-x) + x²/2`` and ``log Φ(x)`` have no zero of
their argument inside; adding a polynomial of degree <= DEGREE to ``f``
does not change its interpolation error), so the interpolation error is at
most ``4 B ρ^-DEGREE / (ρ - 1)``, ``B`` the largest ``|f|`` on ``E_ρ``
(Trefethen, *Approximation Theory and Approximation Practice*, Thm 8.2).
Minimized over ρ piece by piece, the worst case is 4.5e-18 for
``log Φ(-x)``, 3.5e-17 for ``log Φ(x)`` and 3.3e-17 for ``Φ(-x)``, below
:data:`TRUNCATION_BOUND` (the tests recompute it). Rounding the coefficients
to float64 and Horner's rule add about one ulp: the tests check the compiled
evaluation to within :data:`EVALUATION_ULPS` ulps of ``max(1, |f|)`` of the
exact values (mpmath), and against :func:`scipy.special.log_ndtr` and
:func:`scipy.special.ndtr` on a dense grid (to within that plus SciPy's own
error, up to 4 ulps). That is at most 1e-15 where ``|log Φ| < 4``, which
holds for all but a row's extreme values. A² sums ``2n`` such logs with
weights of at most 2, so its error from Φ is at most ``2n`` times that,
1e-11 for n = 5000: a tenth of the tests' relative 1e-9 on an A² of 0.1 (A²
is mostly larger, and the errors of single values do not share one sign).
The KS distance is off by at most one error of Φ (1e-16), against the
tests' 1e-13.

This module imports numba only when :func:`fused_sums` is first called.

Examples
--------
>>> import numpy as np, scipy.stats
>>> y = np.sort(np.random.default_rng(0).normal(size=(2, 50)), axis=-1)
>>> out = fused_sums(y, np.arange(2), np.zeros(2, np.int64), 50, None,
...                  order=4, shapiro=False, anderson=True, ks=True)
>>> ref = scipy.stats.anderson(y[1], method="interpolate").statistic
>>> bool(abs(out["a2"][1] - ref) < 1e-12)
True
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np

from .shapiro import coefficients

PIECE_WIDTH = 0.5
"""Width of the pieces of ``x = |z|`` with one polynomial each."""
PIECES = 16
"""Pieces cover ``0 <= x < PIECES * PIECE_WIDTH = 8``; Φ(-8) ≈ 6e-16."""
TABLE_END = PIECES * PIECE_WIDTH
DEGREE = 12
"""Degree of the polynomials (13 coefficients each)."""
CHUNK = 16
"""Values evaluated against one piece's coefficients at a time."""
ASYMPTOTIC_FROM = 30.0
"""Beyond this ``x``, ``log Φ(-x)`` is its asymptotic series (``erfc`` would
underflow near 38); the first omitted term is below 1e-19 there."""
TRUNCATION_BOUND = 1e-16
"""Bound on the interpolation error of every piece (see the module docstring)."""
EVALUATION_ULPS = 2
"""The compiled evaluation is within this many ulps of ``max(1, |f|)`` of the exact value."""
FIELDS = ("s1", "s2", "s3", "s4", "sax", "a2", "ks")
"""Columns of the float64 output of the compiled kernel, in order."""

_INV_WIDTH = 1.0 / PIECE_WIDTH
_SQRT_HALF = math.sqrt(0.5)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: NaN and Inf propagate
_EMPTY = np.zeros(0)
_EMPTY.setflags(write=False)


@lru_cache(maxsize=1)
def pieces() -> np.ndarray:
    """The coefficients, shape ``(PIECES, 3, DEGREE + 1)``, read-only.

    ``pieces()[k, f]`` holds the monomial coefficients, in
    ``s = 2 (x / PIECE_WIDTH - k) - 1`` (``s`` in [-1, 1]), of ``log Φ(-x)``
    (f = 0), ``log Φ(x)`` (f = 1) and ``Φ(-x)`` (f = 2) on piece ``k``.
    """
    from ._normal_pieces import COEFFICIENTS

    out = np.array(COEFFICIENTS, dtype=np.float64).reshape(PIECES, 3, DEGREE + 1)
    out.setflags(write=False)
    return out


def generate_pieces(digits: int = 40) -> np.ndarray:
    """Recompute :func:`pieces` with mpmath (development only; see :func:`write_pieces`).

    Interpolates each function at the ``DEGREE + 1`` Chebyshev points of the
    second kind of each piece, converts to monomial coefficients in ``s``,
    all in ``digits``-digit arithmetic, and rounds once to float64.
    """
    import mpmath as mp

    with mp.workdps(digits):
        phi = [lambda x: mp.log(mp.ncdf(-x)), lambda x: mp.log(mp.ncdf(x)),
               lambda x: mp.ncdf(-x)]
        nodes = [mp.cos(mp.pi * j / DEGREE) for j in range(DEGREE + 1)]
        monomials = _chebyshev_monomials(mp)
        out = np.empty((PIECES, 3, DEGREE + 1))
        for k in range(PIECES):
            xs = [(k + (s + 1) / 2) * mp.mpf(PIECE_WIDTH) for s in nodes]
            for f, fn in enumerate(phi):
                cheb = _chebyshev_coefficients(mp, [fn(x) for x in xs])
                out[k, f] = [float(mp.fsum(c * t[i] for c, t in zip(cheb, monomials, strict=True)
                                           if i < len(t))) for i in range(DEGREE + 1)]
    return out


def write_pieces(path: str) -> None:
    """Write :func:`generate_pieces` as the module :mod:`._normal_pieces` (development only)."""
    names = ("log Φ(-x)", "log Φ(x)", "Φ(-x)")
    lines = ['"""Coefficients of the piecewise polynomials of :mod:`.normality_fused` (generated).',
             "",
             "Written by :func:`tensorstats.kernels.normality_fused.write_pieces` (mpmath,",
             "40 digits, rounded once to float64); the tests regenerate and compare them.",
             "Piece ``k`` covers ``x`` in ``[k / 2, (k + 1) / 2)``; per piece, the",
             f"{DEGREE + 1} monomial coefficients in ``s = 4 x - 2 k - 1`` of",
             "``log Φ(-x)``, ``log Φ(x)`` and ``Φ(-x)``, lowest power first.",
             '"""', "", "COEFFICIENTS = ("]
    for k, piece in enumerate(generate_pieces()):
        for name, coef in zip(names, piece, strict=True):
            lines.append(f"    # piece {k}, {name}")
            values = [repr(float(c)) for c in coef]
            lines += ["    " + ", ".join(values[i:i + 3]) + "," for i in range(0, len(values), 3)]
    lines.append(")")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def _chebyshev_coefficients(mp, values: list) -> list:
    """Chebyshev coefficients of the interpolant at the points ``cos(pi j / DEGREE)``."""
    d = DEGREE
    out = []
    for k in range(d + 1):
        acc = mp.fsum((mp.mpf(1) / 2 if j in (0, d) else 1) * v * mp.cos(mp.pi * j * k / d)
                      for j, v in enumerate(values)) * 2 / d
        out.append(acc / 2 if k in (0, d) else acc)
    return out


def _chebyshev_monomials(mp) -> list:
    """Monomial coefficients of T_0 ... T_DEGREE (T_k = 2 s T_{k-1} - T_{k-2})."""
    out = [[mp.mpf(1)], [mp.mpf(0), mp.mpf(1)]]
    for _ in range(2, DEGREE + 1):
        new = [mp.mpf(0)] + [2 * c for c in out[-1]]
        for i, c in enumerate(out[-2]):
            new[i] -= c
        out.append(new)
    return out


# ----------------------------------------------------------------- compiled code
# Plain functions here; _kernel() turns them into numba functions on first use
# (the helpers are rebound in this module's namespace, where the callers find them).


def _horner(table, k, f, s):
    """``c[0] + c[1] s + ... + c[DEGREE] s**DEGREE`` with ``c = table[k, f]``.

    Elements, not a slice: slicing inside the loops would count references.
    """
    acc = table[k, f, DEGREE]
    for j in range(DEGREE - 1, -1, -1):
        acc = acc * s + table[k, f, j]
    return acc


def _piece(z):
    """Index of the piece holding ``|z|``; ``PIECES`` beyond the table (or NaN)."""
    x = abs(z)
    return int(x * _INV_WIDTH) if x < TABLE_END else PIECES


def _exact(x):
    """``(log Φ(-x), log Φ(x), Φ(-x))`` for ``x >= 0`` with library calls."""
    t = 0.5 * math.erfc(x * _SQRT_HALF)
    if x < ASYMPTOTIC_FROM:
        low = math.log(t)
    else:  # log Φ(-x) = -x²/2 - log(x √(2π)) + log(1 - 1/x² + 3/x⁴ - 15/x⁶ + ...)
        q = 1.0 / (x * x)
        series = 0.0
        term = 1.0
        for k in range(1, 10):
            term *= -(2 * k - 1) * q
            series += term
        low = -0.5 * x * x - math.log(x) - _HALF_LOG_2PI + math.log1p(series)
    return low, math.log1p(-t), t


def _sums_row(v, n, a, order4):
    """Sums of powers 1-4 (2 unless ``order4``) of ``v[:n]``, and ``a @ v[:n]``."""
    s1 = s2 = s3 = s4 = sax = 0.0
    if a.shape[0] == n:
        if order4:
            for i in range(n):
                d = np.float64(v[i])
                d2 = d * d
                s1 += d
                s2 += d2
                s3 += d2 * d
                s4 += d2 * d2
                sax += a[i] * d
        else:
            for i in range(n):
                d = np.float64(v[i])
                s1 += d
                s2 += d * d
                sax += a[i] * d
    elif order4:
        for i in range(n):
            d = np.float64(v[i])
            d2 = d * d
            s1 += d
            s2 += d2
            s3 += d2 * d
            s4 += d2 * d2
    else:
        for i in range(n):
            d = np.float64(v[i])
            s1 += d
            s2 += d * d
    return s1, s2, s3, s4, sax


def _chunk_pieces(v, n, i0, mean, inv_sd):
    """First and last piece of the chunk of values ``i0 .. i0 + CHUNK - 1`` (< n).

    Sorted values: ``|z|`` is monotone on each side of 0, so the chunk's ends
    bound its pieces (from 0 where z changes sign). ``PIECES`` means beyond
    the table.
    """
    z0 = (v[i0] - mean) * inv_sd
    z1 = (v[min(i0 + CHUNK, n) - 1] - mean) * inv_sd
    k0, k1 = _piece(z0), _piece(z1)
    return (0 if z0 < 0 <= z1 else min(k0, k1)), max(k0, k1)


def _chunk_exact(v, n, i0, mean, inv_sd):
    """A² terms and largest KS gap of the chunk's values beyond the table (library calls)."""
    a2 = 0.0
    top = 0
    for i in range(i0, min(i0 + CHUNK, n)):
        z = (v[i] - mean) * inv_sd
        if _piece(z) < PIECES:
            continue
        low, high, tail = _exact(abs(z))
        lo, hi, cdf = (low, high, tail) if z < 0 else (high, low, 1.0 - tail)
        a2 += (2 * i + 1) / n * lo + (2 * (n - i) - 1) / n * hi
        top = max(top, np.float64(abs((i + 0.5) / n - cdf)).view(np.int64))
    return a2, top


def _cdf_both(v, n, mean, inv_sd, table):
    """A² and the KS distance of the ``n`` sorted values in ``v`` (``len(v) >= CHUNK``).

    Chunk by chunk, once per piece the chunk touches: the inner loop runs a
    constant :data:`CHUNK` times over contiguous values and is written out
    here, not called, so that the compiler vectorizes it completely (a
    variable count runs a scalar remainder; a call it does not inline costs
    a quarter more, measured). A last chunk that would run past the end
    starts earlier instead. Values outside the piece (or before ``i0``) are
    masked by a product, not a select, and the gap ``|(i + 1/2)/n - Φ(z_i)|
    >= 0`` is maxed as its float64 bits (which order like the values): both
    vectorize without ``nnan``. The values are indexed by an unsigned integer:
    a signed one makes numba wrap negative indices, which turns the
    contiguous loads into gathers (10-25% of this loop, measured).
    """
    a2 = 0.0
    top = 0
    for i0 in range(0, n, CHUNK):
        first, last = _chunk_pieces(v, n, i0, mean, inv_sd)
        w0 = np.uint64(min(i0, v.shape[0] - CHUNK))
        for k in range(first, min(last, PIECES - 1) + 1):
            for j in range(CHUNK):
                u_i = w0 + np.uint64(j)
                z = (v[u_i] - mean) * inv_sd
                i = np.int64(u_i)
                x = abs(z)
                u = (x if x < TABLE_END else TABLE_END) * _INV_WIDTH
                s = 2.0 * (u - k) - 1.0
                low = _horner(table, k, 0, s)
                high = _horner(table, k, 1, s)
                tail = _horner(table, k, 2, s)
                neg = z < 0
                lo = low if neg else high   # log Φ(z)
                hi = high if neg else low   # log Φ(-z)
                cdf = tail if neg else 1.0 - tail
                inside = 1.0 if (int(u) == k) & (i >= i0) & (i < n) else 0.0
                a2 += ((lo + hi) + ((2 * i + 1 - n) / n) * (lo - hi)) * inside
                top = max(top, np.float64(abs((i + 0.5) / n - cdf) * inside).view(np.int64))
        if last == PIECES:
            part, gap = _chunk_exact(v, n, i0, mean, inv_sd)
            a2 += part
            top = max(top, gap)
    return -n - a2, np.int64(top).view(np.float64) + 0.5 / n


def _cdf_ks(v, n, mean, inv_sd, table):
    """:func:`_cdf_both` without A² (NaN): only ``Φ(-x)`` is evaluated."""
    top = 0
    for i0 in range(0, n, CHUNK):
        first, last = _chunk_pieces(v, n, i0, mean, inv_sd)
        w0 = np.uint64(min(i0, v.shape[0] - CHUNK))
        for k in range(first, min(last, PIECES - 1) + 1):
            for j in range(CHUNK):
                u_i = w0 + np.uint64(j)
                z = (v[u_i] - mean) * inv_sd
                i = np.int64(u_i)
                x = abs(z)
                u = (x if x < TABLE_END else TABLE_END) * _INV_WIDTH
                tail = _horner(table, k, 2, 2.0 * (u - k) - 1.0)
                cdf = tail if z < 0 else 1.0 - tail
                inside = 1.0 if (int(u) == k) & (i >= i0) & (i < n) else 0.0
                top = max(top, np.float64(abs((i + 0.5) / n - cdf) * inside).view(np.int64))
        if last == PIECES:
            top = max(top, _chunk_exact(v, n, i0, mean, inv_sd)[1])
    return np.nan, np.int64(top).view(np.float64) + 0.5 / n


def _padded(v, pad):
    """``v``, or for rows shorter than :data:`CHUNK` a copy padded with its last value.

    Element loops: slice assignment compiles numba's checks and their messages
    (seconds of compile time).
    """
    n = v.shape[0]
    if n >= CHUNK:
        return v
    for i in range(CHUNK):
        pad[i] = v[min(i, n - 1)]
    return pad


def _row(v, n, a, order4, anderson, ks, table, out):
    """Both passes over the ``n`` sorted values in ``v`` (at least :data:`CHUNK` long)."""
    s1, s2, s3, s4, sax = _sums_row(v, n, a, order4)
    out[0], out[1], out[2], out[3], out[4] = s1, s2, s3, s4, sax
    if anderson or ks:
        mean = s1 / n
        ss = s2 - mean * s1
        inv_sd = 1.0 / math.sqrt((ss if ss > 0 else 1.0) / (n - 1))
        if anderson:
            out[5], out[6] = _cdf_both(v, n, mean, inv_sd, table)
        else:
            out[5], out[6] = _cdf_ks(v, n, mean, inv_sd, table)


def _fused_impl(y, rows, start, n, a, order4, anderson, ks, table, out, constant):
    """Both passes over ``y[rows[r], start[r]:start[r] + n]`` for every ``r``."""
    pad = np.empty(CHUNK, y.dtype)
    for r in range(rows.shape[0]):
        v = y[rows[r], start[r]:start[r] + n]
        constant[r] = not v[n - 1] > v[0]
        _row(_padded(v, pad), n, a, order4, anderson, ks, table, out[r])


def _evaluate_impl(x, table, out):
    """The three tabulated functions at ``x >= 0`` (``out`` (len(x), 3)), as the kernel does."""
    for i in range(x.shape[0]):
        k = _piece(x[i])
        if k < PIECES:
            s = 2.0 * (x[i] * _INV_WIDTH - k) - 1.0
            for f in range(3):
                out[i, f] = _horner(table, k, f, s)
        else:
            out[i, 0], out[i, 1], out[i, 2] = _exact(x[i])


_HELPERS = ("_horner", "_piece", "_exact", "_sums_row", "_chunk_pieces", "_chunk_exact",
            "_cdf_both", "_cdf_ks", "_padded", "_row")
_compiled: dict | None = None
_lock = threading.Lock()


def _kernel(name: str):
    """The compiled ``name`` (``"fused"`` or ``"evaluate"``), compiled once per process.

    Dispatchers are made lazily (numba is imported here, not with the
    package); each compiles on its first call per dtype, and numba caches the
    machine code on disk (``cache=True``), so later processes only load it.
    """
    global _compiled
    if _compiled is None:
        with _lock:
            if _compiled is None:
                import numba

                options = {"nogil": True, "cache": True, "fastmath": _FASTMATH,
                           "error_model": "numpy"}
                space = globals()
                for helper in _HELPERS:
                    space[helper] = numba.njit(**options)(space[helper])
                _compiled = {"evaluate": numba.njit(**options)(_evaluate_impl),
                             "fused": numba.njit(**options)(_fused_impl)}
    return _compiled[name]


def evaluate(x: np.ndarray) -> np.ndarray:
    """``log Φ(-x)``, ``log Φ(x)`` and ``Φ(-x)`` (columns) as the kernel computes them.

    For testing the tabulated polynomials; ``x`` must be >= 0.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty((x.shape[0], 3))
    _kernel("evaluate")(x, pieces(), out)
    return out


def fused_sums(y: np.ndarray, rows: np.ndarray, start: np.ndarray, n: int,
               center: np.ndarray | None, *, order: int, shapiro: bool, anderson: bool,
               ks: bool) -> dict[str, np.ndarray]:
    """Both passes over the sorted finite rows ``y[rows, start:start + n]``.

    Parameters
    ----------
    y : ndarray, shape (g, N)
        float32 or float64, C-contiguous; each used run sorted ascending and finite.
    rows, start : ndarray of int64, shape (m,)
        Which rows of ``y`` and where in each its ``n >= 3`` values begin.
    n : int
        Values per row.
    center : ndarray of float64, shape (m,), optional
        Subtracted from each row's values (in float64) before everything; 0 if None.
    order : {2, 4}
        Highest power summed.
    shapiro : bool
        Also give ``sax``, Shapiro-Wilk's ``a @ (y - center)``.
    anderson, ks : bool
        Also give ``a2``, the Anderson-Darling A², and ``ks``, the KS distance
        of the values standardized by their mean and std (ddof=1).

    Returns
    -------
    dict of ndarray, shape (m,)
        ``constant`` (no two values differ), ``s1`` ... ``s<order>``, and
        ``sax``, ``a2``, ``ks`` when asked for (columns of one array).
    """
    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order}")
    rows = np.ascontiguousarray(rows, np.int64)
    start = np.ascontiguousarray(start, np.int64)
    m = len(rows)
    if center is not None:
        # Subtracted by NumPy and stored: the compiled code, which may reassociate
        # (y - c) - mean into y - (c + mean), only sees the deviations.
        values = y[rows[:, None], start[:, None] + np.arange(n)] - np.asarray(center)[:, None]
        return fused_sums(values.astype(np.float64), np.arange(m), np.zeros(m, np.int64), n,
                          None, order=order, shapiro=shapiro, anderson=anderson, ks=ks)
    out = np.full((m, len(FIELDS)), np.nan)
    constant = np.empty(m, np.bool_)
    a = coefficients(n) if shapiro else _EMPTY
    if m:
        _kernel("fused")(np.ascontiguousarray(y), rows, start, n, a, order == 4, anderson, ks,
                         pieces(), out, constant)
    wanted = ["s1", "s2"] + (["s3", "s4"] if order == 4 else []) + (["sax"] if shapiro else []) \
        + (["a2"] if anderson else []) + (["ks"] if ks else [])
    result = {"constant": constant}
    result.update((name, out[:, FIELDS.index(name)]) for name in wanted)
    return result

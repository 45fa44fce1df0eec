"""The compiled per-value kernel of ts.normality against NumPy and SciPy references.

:func:`numpy_sums` is the NumPy implementation the compiled kernel replaced
(BLAS power sums, ``scipy.special.ndtr`` and NumPy logs over whole arrays); it
is kept here as the reference. The tabulated normal CDF is checked against
``scipy.special.log_ndtr`` / ``ndtr`` on a dense grid, and its interpolation
error bound is recomputed independently of the table.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from hypothesis.extra import numpy as hnp
from scipy.special import log_ndtr, ndtr

from tensorstats.kernels import normal_cdf, normality_fused, shapiro
from tensorstats.kernels.moments import power_sums
from tensorstats.kernels.normality import normality_kernel

SIZES = [3, 4, 5, 11, 12, 15, 16, 17, 257, 2048]
MODES = {  # tests, effect_size
    "default": (("shapiro", "anderson"), True),
    "ks only": (("shapiro",), True),
    "anderson only": (("anderson",), False),
    "sums only": (("shapiro",), False),
    "moments": (("dagostino",), False),
}


def numpy_sums(y: np.ndarray, center: np.ndarray | None, tests: tuple[str, ...],
               effect_size: bool) -> dict:
    """The NumPy path the compiled kernel replaced, for sorted finite rows ``y`` (g, n)."""
    n = y.shape[1]
    order = 4 if effect_size or "dagostino" in tests or "jarque_bera" in tests else 2
    out = {"constant": ~(y[:, -1] > y[:, 0])}
    weights = shapiro.coefficients(n)[:, None] if "shapiro" in tests else None
    sums = power_sums(y, center, order=order, weights=weights)
    out.update((k, v) for k, v in sums.items() if k != "weighted")
    if "shapiro" in tests:
        out["sax"] = sums["weighted"][:, 0]
    if not (effect_size or "anderson" in tests):
        return out
    mean = out["s1"] / n
    ss = np.maximum(out["s2"] - mean * out["s1"], 0.0)
    inv_sd = 1.0 / np.sqrt(np.where(ss > 0, ss, 1.0) / (n - 1))
    values = y.astype(np.float64) if center is None else y - center[:, None]
    if "anderson" not in tests:
        out["ks"] = normal_cdf.ks_distance_pruned(values, mean, inv_sd)
        return out
    z = (values - mean[:, None]) * inv_sd[:, None]
    t = normal_cdf.tail_cdf(z)
    out["a2"] = normal_cdf.anderson_statistic(z, t)
    if effect_size:
        out["ks"] = normal_cdf.ks_distance(z, t)
    return out


def fused(y: np.ndarray, center: np.ndarray | None, tests: tuple[str, ...],
          effect_size: bool) -> dict:
    order = 4 if effect_size or "dagostino" in tests or "jarque_bera" in tests else 2
    g, n = y.shape
    return normality_fused.fused_sums(y, np.arange(g), np.zeros(g, np.int64), n, center,
                                      order=order, shapiro="shapiro" in tests,
                                      anderson="anderson" in tests, ks=effect_size)


def _rows(kind: str, g: int, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "normal":
        x = rng.normal(size=(g, n))
    elif kind == "heavy":  # standardized values far beyond the table (|z| >= 8)
        x = rng.standard_cauchy(size=(g, n))
    elif kind == "uniform":
        x = rng.uniform(-1, 1, size=(g, n))
    else:  # ties
        x = rng.integers(0, 4, size=(g, n)).astype(float)
    return np.sort(x, axis=-1)


def _close(got: np.ndarray, ref: np.ndarray, rtol: float, atol: np.ndarray | float,
           name: str) -> None:
    assert np.isfinite(ref).all(), name
    bad = ~(np.abs(got - ref) <= rtol * np.abs(ref) + atol)
    assert not bad.any(), (name, got[bad], ref[bad], np.broadcast_to(atol, got.shape)[bad])


def assert_matches(got: dict, ref: dict, y: np.ndarray) -> None:
    """Every field of the reference, to within rounding of the two summation orders."""
    assert set(got) == set(ref), (sorted(got), sorted(ref))
    np.testing.assert_array_equal(got["constant"], ref["constant"])
    scale = np.abs(y.astype(np.float64)).max(axis=-1)
    n = y.shape[1]
    for p in (1, 2, 3, 4):
        if f"s{p}" in ref:
            _close(got[f"s{p}"], ref[f"s{p}"], 1e-12, 1e-14 * n * scale ** p, f"s{p}")
    if "sax" in ref:
        _close(got["sax"], ref["sax"], 1e-12, 1e-14 * n * scale, "sax")
    # Both sides standardize with their own rounding of the mean: z is off by about
    # eps |mean| / sd. A² = -n - (a sum of size ~n) also rounds at eps * n.
    values = y.astype(np.float64)
    cond = 1.0 + np.abs(values.mean(axis=-1)) / (values.std(axis=-1) + 1e-300)
    if "a2" in ref:
        _close(got["a2"], ref["a2"], 1e-10, 1e-14 * n * cond, "a2")
    if "ks" in ref:
        _close(got["ks"], ref["ks"], 0.0, 2e-15 * cond, "ks")


# ----------------------------------------------------------------- against NumPy


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["normal", "heavy", "uniform", "ties"])
def test_fused_matches_the_numpy_path(kind, n, dtype, mode):
    tests, effect_size = MODES[mode]
    y = _rows(kind, 7, n, np.random.default_rng(n)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fused(y, None, tests, effect_size)
    with np.errstate(divide="ignore"):  # log(Φ(-40)) = log(0) on the NumPy side
        ref = numpy_sums(y, None, tests, effect_size)
    keep = ~ref["constant"]  # small rows of ties can be constant: no CDF for them
    if "a2" in ref:  # the NumPy A² is infinite beyond |z| = 38; scipy's is not
        for i in np.flatnonzero(~np.isfinite(ref["a2"])):
            a2 = st.anderson(y[i].astype(np.float64), method="interpolate").statistic
            assert abs(got["a2"][i] - a2) <= 1e-10 * a2, (got["a2"][i], a2)
            keep[i] = False
    assert_matches({k: v[keep] for k, v in got.items()}, {k: v[keep] for k, v in ref.items()},
                   y[keep])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", SIZES)
def test_fused_matches_scipy(n, dtype):
    """A² and the KS distance straight from scipy.stats, row by row."""
    y = _rows("normal", 5, n, np.random.default_rng(100 + n)).astype(dtype)
    got = fused(y, None, ("shapiro", "anderson"), True)
    for i, row in enumerate(y.astype(np.float64)):
        a2 = st.anderson(row, dist="norm", method="interpolate").statistic
        z = (row - row.mean()) / row.std(ddof=1)
        assert abs(got["a2"][i] - a2) <= 1e-10 * a2 + 1e-14 * n, (i, got["a2"][i], a2)
        assert abs(got["ks"][i] - st.kstest(z, "norm").statistic) < 1e-13
        np.testing.assert_allclose(got["sax"][i], shapiro.coefficients(n) @ row, rtol=1e-12,
                                   atol=1e-13 * n)


@pytest.mark.parametrize("n", [3, 12, 257, 2048])
def test_center_keeps_digits_of_a_large_offset(n):
    """1e7 + 0.1 * noise, summed about the row's mean: as exact as the noise alone."""
    rng = np.random.default_rng(n)
    d = np.sort(0.1 * rng.normal(size=(4, n)), axis=-1)
    y = 1e7 + d
    center = y.mean(axis=-1)
    tests = ("shapiro", "anderson")
    got = fused(y, center, tests, True)
    assert_matches(got, numpy_sums(y, center, tests, True), y - center[:, None])
    # y - center is exact up to the rounding of 1e7 + d (~1e-9), so the statistics of
    # y are those of d to about 1e-9 / 0.1
    plain = fused(d, None, tests, True)
    np.testing.assert_allclose(got["a2"], plain["a2"], rtol=1e-6)
    np.testing.assert_allclose(got["ks"], plain["ks"], atol=1e-7)
    w = got["sax"] ** 2 / (got["s2"] - got["s1"] ** 2 / n)
    np.testing.assert_allclose(w, plain["sax"] ** 2 / (plain["s2"] - plain["s1"] ** 2 / n),
                               rtol=1e-6)


@pytest.mark.parametrize("n", [3, 12, 257, 2048])
def test_center_of_float32_rows(n):
    """float32 rows far from 0: the centre is subtracted in float64, as by NumPy."""
    rng = np.random.default_rng(n)
    y = np.sort(1e3 + 0.01 * rng.normal(size=(4, n)), axis=-1).astype(np.float32)
    center = y.astype(np.float64).mean(axis=-1)
    for tests, effect_size in MODES.values():
        got = fused(y, center, tests, effect_size)
        ref = numpy_sums(y, center, tests, effect_size)
        assert_matches(got, ref, y.astype(np.float64) - center[:, None])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [3, 4, 12, 257])
def test_constant_rows_are_flagged_without_warnings(n, dtype):
    y = np.sort(np.random.default_rng(n).normal(size=(4, n)), axis=-1).astype(dtype)
    y[0] = 2.5
    y[2] = -1e30 if dtype == np.float32 else -1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = fused(y, None, ("shapiro", "anderson"), True)
    assert got["constant"].tolist() == [True, False, True, False]
    assert np.isfinite(got["a2"][[1, 3]]).all() and np.isfinite(got["ks"][[1, 3]]).all()


def test_runs_inside_wider_rows_and_subsets_of_rows():
    """``rows`` and ``start`` pick runs out of a wider array, as for mixed sizes."""
    rng = np.random.default_rng(3)
    wide = np.sort(rng.normal(size=(6, 40)), axis=-1)
    rows = np.array([5, 1, 3])
    start = np.array([0, 7, 21])
    n = 19
    got = normality_fused.fused_sums(wide, rows, start, n, None, order=4, shapiro=True,
                                     anderson=True, ks=True)
    sub = np.stack([wide[r, s:s + n] for r, s in zip(rows, start, strict=True)])
    assert_matches(got, numpy_sums(sub, None, ("shapiro", "anderson"), True), sub)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(np.float64, hs.integers(3, 300),
                  elements=hs.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False,
                                     allow_subnormal=False)),
       hs.sampled_from(list(MODES)))
def test_fused_matches_numpy_on_any_finite_row(values, mode):
    y = np.sort(values)[None]
    if not (y[0, -1] > y[0, 0] and y.var() > 1e-200):  # constant, or its spread² underflows
        return
    tests, effect_size = MODES[mode]
    got = fused(y, None, tests, effect_size)
    ref = numpy_sums(y, None, tests, effect_size)
    mean = y.mean()
    if abs(mean) > 10 * y.std():  # the kernel re-centres those rows first
        center = np.array([mean])
        got = fused(y, center, tests, effect_size)
        ref = numpy_sums(y, center, tests, effect_size)
        y = y - center
    assert_matches(got, ref, y)
    if "a2" in got:
        a2 = st.anderson(y[0], dist="norm", method="interpolate").statistic
        assert abs(got["a2"][0] - a2) <= 1e-9 * a2 + 1e-13 * y.shape[1]


# ----------------------------------------------------------------- the tabulated CDF


def _ulps(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(got - ref) / np.spacing(np.maximum(1.0, np.abs(ref)))


SCIPY_ULPS = 4
"""scipy's own error: log_ndtr is up to 4 ulps of max(1, |f|) off on [0, 8] (against
mpmath at 30 digits on 30000 random points), ndtr 1."""


def test_tabulated_cdf_matches_scipy_on_a_dense_grid():
    x = np.concatenate([np.linspace(0, normality_fused.TABLE_END, 1 << 22, endpoint=False),
                        np.arange(normality_fused.PIECES + 1) * normality_fused.PIECE_WIDTH,
                        np.linspace(normality_fused.TABLE_END, 37.0, 20001)])
    got = normality_fused.evaluate(x)
    for f, ref in enumerate((log_ndtr(-x), log_ndtr(x), ndtr(-x))):
        err = _ulps(got[:, f], ref)
        assert err.max() <= normality_fused.EVALUATION_ULPS + SCIPY_ULPS, (f, err.max())


def test_tabulated_cdf_matches_mpmath():
    mp = pytest.importorskip("mpmath")
    x = np.random.default_rng(0).uniform(0, normality_fused.TABLE_END, 3000)
    got = normality_fused.evaluate(x)
    exact = (lambda v: mp.log(mp.ncdf(-v)), lambda v: mp.log(mp.ncdf(v)), lambda v: mp.ncdf(-v))
    with mp.workdps(30):
        for f, fn in enumerate(exact):
            ref = np.array([float(fn(mp.mpf(float(v)))) for v in x])
            assert _ulps(got[:, f], ref).max() <= normality_fused.EVALUATION_ULPS, f


def test_asymptotic_tail_matches_scipy():
    x = np.array([30.0, 35.0, 38.0, 40.0, 100.0, 1e3, 1e5])
    got = normality_fused.evaluate(x)
    np.testing.assert_allclose(got[:, 0], log_ndtr(-x), rtol=4e-16)
    np.testing.assert_allclose(got[:, 1], log_ndtr(x), rtol=0, atol=1e-190)  # ~ -Φ(-x)


def _continuous_log(h: np.ndarray) -> np.ndarray | None:
    """log of ``h`` along a closed curve starting on the positive reals; None if it winds."""
    angle = np.unwrap(np.angle(h))
    angle -= angle[0]
    return None if abs(angle[-1]) > 1e-6 else np.log(np.abs(h)) + 1j * angle


def _ellipse_bound(f: int, k: int) -> float:
    """Trefethen's bound 4 B ρ^-d / (ρ - 1) on piece ``k`` of function ``f``, best ρ."""
    w, d = normality_fused.PIECE_WIDTH, normality_fused.DEGREE
    theta = np.linspace(0, 2 * np.pi, 4097)
    best = np.inf
    for rho in np.exp(np.linspace(np.log(1.5), np.log(60), 40)):
        s = (rho * np.exp(1j * theta) + np.exp(-1j * theta) / rho) / 2
        x = (k + (s + 1) / 2) * w
        with np.errstate(all="ignore"):
            if f == 0:  # log Φ(-x) + x²/2: the same interpolation error, no wild phase
                val = _continuous_log(ndtr(-x) * np.exp(x * x / 2))
            elif f == 1:
                val = _continuous_log(ndtr(x))
            else:
                val = ndtr(-x)
        if val is None or not np.isfinite(val).all():
            break  # a zero of the argument of log inside: larger ellipses hold it too
        best = min(best, 4 * np.abs(val).max() * rho ** -d / (rho - 1))
    return best


def test_interpolation_error_bound():
    worst = max(_ellipse_bound(f, k) for f in range(3) for k in range(normality_fused.PIECES))
    assert worst <= normality_fused.TRUNCATION_BOUND, worst


def test_stored_coefficients_are_the_generated_ones(tmp_path):
    pytest.importorskip("mpmath")
    np.testing.assert_array_equal(normality_fused.generate_pieces(), normality_fused.pieces())
    normality_fused.write_pieces(str(tmp_path / "pieces.py"))
    stored = Path(normality_fused.__file__).with_name("_normal_pieces.py")
    assert (tmp_path / "pieces.py").read_text("utf-8") == stored.read_text("utf-8")


# ----------------------------------------------------------------- integration


def test_numba_is_not_imported_with_the_package():
    code = ("import sys, tensorstats, tensorstats.kernels.normality; "
            "assert 'numba' not in sys.modules, 'numba imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_threads_give_the_same_numbers():
    x = np.random.default_rng(2).standard_t(5, size=(600, 300)).astype(np.float32)
    one = normality_kernel(x, threads=1)
    two = normality_kernel(x, threads=2)
    for k in one:
        np.testing.assert_array_equal(one[k], two[k])

"""The NumPy kernels behind ts.moments / ts.normality, each against a reference.

References: scipy.stats and statsmodels on the same data, and brute-force
loops (one group at a time) for the vectorized paths.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats as st
from statsmodels.stats.diagnostic import normal_ad
from statsmodels.stats.multitest import multipletests

from tensorstats.kernels import blocks, fdr, moments, normal_cdf, shapiro, subsample
from tensorstats.kernels.normality import normality_kernel


def _groups(rng: np.random.Generator, kind: str, g: int, n: int) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=(g, n))
    if kind == "uniform":
        return rng.uniform(-1, 1, size=(g, n))
    if kind == "heavy":
        return rng.standard_t(2, size=(g, n))
    return rng.normal(size=(g, n)) + 4.0 * (rng.uniform(size=(g, n)) < 0.5)  # bimodal


@pytest.mark.parametrize("n", [*range(3, 40), 50, 99, 100, 101, 512, 2047, 5000])
def test_shapiro_matches_scipy_for_every_small_n(n):
    rng = np.random.default_rng(n)
    x = np.concatenate([_groups(rng, k, 3, n) for k in ("normal", "uniform", "heavy", "bimodal")])
    w, p = shapiro.shapiro_sorted(np.sort(x, axis=-1))
    for i, row in enumerate(x):
        ref = st.shapiro(row)
        assert abs(w[i] - ref.statistic) < 1e-10, (n, i)
        assert abs(p[i] - ref.pvalue) < 1e-9, (n, i)


def test_shapiro_extreme_w_branches():
    # n=3 below the minimum W, n<=11 beyond the range of the approximation, W == 1.
    cases = [np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0, 0.0, 1.0]),
             np.array([0.0] * 9 + [1.0]), np.array([-1.0, 0.0, 1.0]),
             np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 50.0, 1e4])]
    for x in cases:
        w, p = shapiro.shapiro_sorted(np.sort(x)[None])
        ref = st.shapiro(x)
        assert abs(w[0] - ref.statistic) < 1e-10 and abs(p[0] - ref.pvalue) < 1e-9, x


def test_shapiro_coefficients_are_normalised_and_antisymmetric():
    for n in (3, 4, 5, 6, 11, 12, 100, 5000):
        a = shapiro.coefficients(n)
        assert abs(a @ a - 1.0) < 1e-12
        np.testing.assert_allclose(a, -a[::-1], atol=1e-15)
        assert not a.flags.writeable


@pytest.mark.parametrize("kind", ["normal", "uniform", "heavy", "bimodal"])
@pytest.mark.parametrize("n", [8, 20, 500])
def test_anderson_matches_scipy_and_statsmodels(kind, n):
    rng = np.random.default_rng(n)
    x = _groups(rng, kind, 6, n)
    y = np.sort(x, axis=-1)
    z = (y - y.mean(-1, keepdims=True)) / y.std(-1, ddof=1, keepdims=True)
    t = normal_cdf.tail_cdf(z)
    a2 = normal_cdf.anderson_statistic(z, t)
    p = normal_cdf.anderson_pvalue(a2, n)
    ks = normal_cdf.ks_distance(z, t)
    for i, row in enumerate(x):
        ref = st.anderson(row, dist="norm", method="interpolate").statistic
        np.testing.assert_allclose(a2[i], ref, rtol=1e-10)
        with np.errstate(divide="ignore"):
            sm_stat, sm_p = normal_ad(row)
        if np.isfinite(sm_stat):  # statsmodels' log1p(-cdf) overflows in far tails; scipy's doesn't
            np.testing.assert_allclose(a2[i], sm_stat, rtol=1e-6)
        np.testing.assert_allclose(p[i], sm_p, rtol=1e-5, atol=1e-12)
        zr = (row - row.mean()) / row.std(ddof=1)
        np.testing.assert_allclose(ks[i], st.kstest(zr, "norm").statistic, rtol=1e-12)


def test_anderson_pvalue_equals_the_four_fits_written_out():
    """One exp per value, picked fit first: the same bits as evaluating every fit
    (statsmodels' ``normal_ad`` formulas) and selecting, on a grid over every piece."""
    a2 = np.concatenate([np.linspace(0, 14, 20001), [np.nan, np.inf, 0.2, 0.34, 0.6, 13.0]])
    for n in (8, 100, 5000):
        a = a2 * (1 + 0.75 / n + 2.25 / n**2)
        with np.errstate(over="ignore", invalid="ignore"):
            ref = np.select(
                [a < 0.2, a < 0.34, a < 0.6, a <= 13.0],
                [1 - np.exp(-13.436 + 101.14 * a - 223.73 * a * a),
                 1 - np.exp(-8.318 + 42.796 * a - 59.938 * a * a),
                 np.exp(0.9177 - 4.279 * a - 1.38 * a * a),
                 np.exp(1.2937 - 5.709 * a + 0.0186 * a * a)], default=0.0)
        ref[np.isnan(a)] = np.nan
        np.testing.assert_array_equal(normal_cdf.anderson_pvalue(a2, n), ref)


def test_anderson_pvalue_covers_every_piece_like_statsmodels():
    # Scale a heavy tail to walk A² through all five pieces, p == 0 above 13 included.
    rng = np.random.default_rng(3)
    seen = set()
    for df in (100, 10, 5, 3, 2, 1.2, 0.7):
        for _ in range(5):
            x = rng.standard_t(df, size=200)
            y = np.sort(x)[None]
            z = (y - y.mean()) / y.std(ddof=1)
            a2 = normal_cdf.anderson_statistic(z, normal_cdf.tail_cdf(z))
            p = normal_cdf.anderson_pvalue(a2, 200)[0]
            sm = normal_ad(x)
            a2a = sm[0] * (1 + 0.75 / 200 + 2.25 / 200 ** 2)
            seen.add(int(np.searchsorted([0.2, 0.34, 0.6, 13.0], a2a)))
            np.testing.assert_allclose(p, sm[1], rtol=1e-5, atol=1e-300)
    assert seen >= {0, 3, 4}, seen


@pytest.mark.parametrize("n", [8, 9, 20, 300])
def test_dagostino_and_jarque_bera_match_scipy(n):
    rng = np.random.default_rng(n)
    x = np.concatenate([_groups(rng, k, 3, n) for k in ("normal", "uniform", "heavy", "bimodal")])
    out = normality_kernel(x, tests=("dagostino", "jarque_bera"))
    for i, row in enumerate(x):
        ref = st.normaltest(row)
        np.testing.assert_allclose(out["statistic"][i, 0], ref.statistic, rtol=1e-10)
        np.testing.assert_allclose(out["pvalue"][i, 0], ref.pvalue, rtol=1e-8, atol=1e-300)
        ref = st.jarque_bera(row)
        np.testing.assert_allclose(out["statistic"][i, 1], ref.statistic, rtol=1e-10)
        np.testing.assert_allclose(out["pvalue"][i, 1], ref.pvalue, rtol=1e-8, atol=1e-300)


def test_dagostino_is_nan_below_8():
    x = np.random.default_rng(0).normal(size=(2, 7))
    out = normality_kernel(x, tests=("dagostino", "shapiro"))
    assert np.isnan(out["statistic"][:, 0]).all() and np.isfinite(out["statistic"][:, 1]).all()


def test_normality_kernel_mixed_sizes_and_nonfinite_match_a_loop():
    rng = np.random.default_rng(7)
    x = rng.standard_t(4, size=(40, 60))
    for i in range(40):  # every group loses a different number of values
        drop = rng.choice(60, size=i, replace=False)
        x[i, drop] = rng.choice([np.nan, np.inf, -np.inf], size=i)
    tests = ("shapiro", "anderson", "dagostino", "jarque_bera")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normality_kernel(x, tests=tests, threads=2)
    for i, row in enumerate(x):
        v = row[np.isfinite(row)]
        assert out["n"][i] == v.size
        assert out["nan_count"][i] == np.isnan(row).sum()
        assert out["inf_count"][i] == np.isinf(row).sum()
        if v.size < 3:
            assert np.isnan(out["statistic"][i]).all()
            continue
        np.testing.assert_allclose(out["statistic"][i, 0], st.shapiro(v).statistic, atol=1e-10)
        np.testing.assert_allclose(out["pvalue"][i, 0], st.shapiro(v).pvalue, atol=1e-9)
        np.testing.assert_allclose(out["statistic"][i, 1], normal_ad(v)[0], rtol=1e-6)
        if v.size >= 8:
            np.testing.assert_allclose(out["statistic"][i, 2], st.normaltest(v).statistic,
                                       rtol=1e-9)
        np.testing.assert_allclose(out["skew"][i], st.skew(v), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(out["kurtosis"][i], st.kurtosis(v), rtol=1e-9, atol=1e-12)


def test_normality_kernel_threads_and_blocks_do_not_change_results(monkeypatch):
    x = np.random.default_rng(1).normal(size=(300, 100)).astype(np.float32)
    one = normality_kernel(x, threads=1)
    monkeypatch.setattr(blocks, "BLOCK_VALUES", 700)
    many = normality_kernel(x, threads=2)
    for k in one:
        np.testing.assert_array_equal(one[k], many[k])


def test_normality_kernel_degenerate_groups_give_nan_silently():
    x = np.ones((4, 10))
    x[1] = np.nan
    x[2, 2:] = np.nan
    x[3] = np.linspace(0, 1, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = normality_kernel(x, tests=("shapiro", "anderson", "dagostino", "jarque_bera"))
    assert np.isnan(out["statistic"][:3]).all() and np.isnan(out["pvalue"][:3]).all()
    assert np.isnan(out["ks_distance"][:3]).all() and np.isnan(out["skew"][:3]).all()
    assert np.isfinite(out["statistic"][3, :2]).all()
    assert out["n"].tolist() == [10, 0, 2, 10]


def test_large_offset_tiny_spread_is_exact():
    rng = np.random.default_rng(5)
    d = 0.1 * rng.normal(size=(3, 400))
    out = normality_kernel(1e7 + d, tests=("shapiro", "anderson"))
    ref = normality_kernel(d, tests=("shapiro", "anderson"))
    # float64 rounds 1e7 + d to ~2e-9: the inputs differ that much, the results as little.
    np.testing.assert_allclose(out["statistic"], ref["statistic"], rtol=1e-6)
    np.testing.assert_allclose(out["skew"], ref["skew"], atol=1e-5)


def test_shapiro_above_5000_warns_once():
    x = np.random.default_rng(0).normal(size=(3, 6000))
    with pytest.warns(UserWarning, match="5000") as record:
        normality_kernel(x, tests=("shapiro",), max_samples=None)
    assert len(record) == 1


def test_unknown_test_is_named():
    with pytest.raises(ValueError, match="'lilliefors'"):
        normality_kernel(np.zeros((1, 5)), tests=("shapiro", "lilliefors"))


# ---------------------------------------------------------------- BH FDR
def test_bh_matches_statsmodels_with_nans_and_ties():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(3, 200)) ** 3
    p[:, ::7] = np.nan
    p[1, 10:20] = 0.01  # ties
    adj = fdr.bh_adjust(p)
    for row, out in zip(p, adj, strict=True):
        ok = ~np.isnan(row)
        np.testing.assert_allclose(out[ok], multipletests(row[ok], method="fdr_bh")[1],
                                   rtol=1e-12)
        assert np.isnan(out[~ok]).all()
    assert np.isnan(fdr.bh_adjust(np.full(4, np.nan))).all()


# ---------------------------------------------------------------- moments
@pytest.mark.parametrize("kind", ["normal", "uniform", "heavy", "bimodal"])
def test_partial_and_finish_match_scipy(kind):
    rng = np.random.default_rng(2)
    x = _groups(rng, kind, 20, 300) * 3 + 5
    x[0, :10] = np.nan
    x[1, 3] = -np.inf
    out = moments.finish_moments(moments.partial_moments(x))
    for i, row in enumerate(x):
        v = row[np.isfinite(row)]
        np.testing.assert_allclose(out["mean"][i], v.mean(), rtol=1e-13)
        np.testing.assert_allclose(out["var"][i], v.var(), rtol=1e-12)
        np.testing.assert_allclose(out["skew"][i], st.skew(v), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(out["kurtosis"][i], st.kurtosis(v), rtol=1e-10, atol=1e-13)
        assert out["min"][i] == v.min() and out["max"][i] == v.max()


def test_merge_of_random_pieces_equals_whole():
    rng = np.random.default_rng(4)
    x = rng.standard_t(3, size=(5, 1000)) + 100.0
    whole = moments.finish_moments(moments.partial_moments(x))
    cuts = np.sort(rng.choice(np.arange(1, 1000), size=6, replace=False))
    pieces = [moments.partial_moments(p) for p in np.split(x, cuts, axis=-1)]
    # merge as an unbalanced tree: ((p0 + p1) + p2) + (p3 + ...)
    left = moments.merge_moments([moments.merge_moments(pieces[:2]), pieces[2]])
    right = moments.merge_moments(pieces[3:])
    merged = moments.finish_moments(moments.merge_moments([left, right]))
    for k in whole:
        np.testing.assert_allclose(merged[k], whole[k], rtol=1e-11, err_msg=k)


@pytest.mark.parametrize("offset", [-1.0, 1e6])  # 1e6: rows far from 0
def test_long_rows_on_two_threads(monkeypatch, offset):
    monkeypatch.setattr(moments, "COMPILED_MIN_VALUES_PER_THREAD", 1000)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 4321)) * 2 + offset
    x[1, 17] = np.nan  # a masked row among long ones
    out = moments.finish_moments(moments.partial_moments(x, threads=2))
    ok = np.isfinite(x)
    for r in range(3):
        v = x[r, ok[r]]
        np.testing.assert_allclose(out["mean"][r], v.mean(), rtol=1e-14)
        np.testing.assert_allclose(out["var"][r], v.var(), rtol=1e-12)
        np.testing.assert_allclose(out["skew"][r], st.skew(v), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(out["kurtosis"][r], st.kurtosis(v), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("piece", [1 << 15, 16, 120])  # whole rows; pieces of a row; 2 rows
def test_power_sums_match_a_loop(monkeypatch, piece):
    monkeypatch.setattr(moments, "SUMS_BLOCK_VALUES", piece)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((7, 50), dtype=np.float32)
    shift = rng.normal(size=7)
    w = rng.normal(size=(50, 2))
    got = moments.power_sums(x, shift, weights=w, extremes=True)
    got2 = moments.power_sums(x, shift, order=2)
    for r in range(7):
        y = x[r].astype(np.float64) - shift[r]
        for k in range(4):
            ref = math.fsum(y ** (k + 1))
            assert got[f"s{k + 1}"][r] == pytest.approx(ref, rel=1e-13, abs=1e-12)
            if k < 2:
                assert got2[f"s{k + 1}"][r] == pytest.approx(ref, rel=1e-13, abs=1e-12)
        for j in range(2):
            ref = math.fsum(y * w[:, j])
            assert got["weighted"][r, j] == pytest.approx(ref, rel=1e-12, abs=1e-12)
        assert got["min"][r] == x[r].min() and got["max"][r] == x[r].max()
    assert "s3" not in got2 and "weighted" not in got2
    empty = moments.power_sums(np.zeros((3, 0)), extremes=True)  # no values: sums 0
    assert empty["s4"].tolist() == [0.0] * 3 and np.isposinf(empty["min"]).all()
    assert moments.power_sums(np.zeros((0, 5)), order=2)["s2"].shape == (0,)


def test_moments_of_integers_bools_and_float16():
    x = np.arange(12).reshape(3, 4)
    for arr in (x, x.astype(np.int8), (x % 3 == 0), x.astype(np.float16)):
        out = moments.finish_moments(moments.partial_moments(arr))
        np.testing.assert_allclose(out["mean"], arr.astype(np.float64).mean(axis=-1))
    with pytest.raises(TypeError, match="complex"):
        moments.partial_moments(np.zeros((2, 2), complex))


# ---------------------------------------------------------------- subsampling
def test_subsample_is_a_seeded_uniform_subset_of_the_finite_values():
    x = np.arange(40.0).reshape(2, 20)
    x[1, :5] = np.nan
    keys = subsample.label_keys(0, [np.array([10, 20])])
    s = subsample.take_subsample(x, keys, 8)
    assert s.shape == (2, 8)
    assert set(s[0]) <= set(x[0]) and len(set(s[0])) == 8
    assert np.isfinite(s[1]).all() and set(s[1]) <= set(x[1, 5:])
    # Labels, not positions, decide: same label -> same subset; other seed -> other subset.
    again = subsample.take_subsample(x[::-1], subsample.label_keys(0, [np.array([20, 10])]), 8)
    np.testing.assert_array_equal(again[::-1], s)
    other = subsample.take_subsample(x, subsample.label_keys(1, [np.array([10, 20])]), 8)
    assert not np.array_equal(other, s)
    # Fewer finite values than k: all of them are kept (padding is non-finite).
    few = subsample.take_subsample(x, keys, 18)
    assert np.isfinite(few[1]).sum() == 15


def test_subsample_frequencies_are_uniform():
    # Each of 50 positions should be chosen with probability 10/50 over many groups.
    g = 4000
    keys = subsample.label_keys(3, [np.arange(g)])
    x = np.tile(np.arange(50.0), (g, 1))
    chosen = subsample.take_subsample(x, keys, 10).astype(int)
    counts = np.bincount(chosen.ravel(), minlength=50)
    assert st.chisquare(counts).pvalue > 1e-4


def test_label_keys_hash_values_not_dtypes():
    a = subsample.label_keys(0, [np.array([1, 2], np.int32), np.array(["x", "y"])])
    b = subsample.label_keys(0, [np.array([1, 2], np.int64), np.array(["x", "y"], object)])
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 2) and len(np.unique(a)) == 4


def test_map_row_blocks_threads_match_serial():
    x = np.random.default_rng(0).normal(size=(101, 7))
    serial = blocks.map_row_blocks(lambda b: {"m": b.mean(axis=-1)}, x, rows=10, threads=1)
    threaded = blocks.map_row_blocks(lambda b: {"m": b.mean(axis=-1)}, x, rows=10, threads=2)
    np.testing.assert_array_equal(serial["m"], x.mean(axis=-1))
    np.testing.assert_array_equal(threaded["m"], serial["m"])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["normal", "uniform", "heavy", "bimodal", "ties", "cauchy",
                                  "offset", "quantiles"])
@pytest.mark.parametrize("n", [3, 9, 256, 4000])
def test_screened_ks_distance_is_exact(kind, n, dtype):
    # Without "anderson" the KS distance screens with a table of Φ and evaluates Φ
    # exactly only near the maximum; it must still equal scipy's KS statistic.
    rng = np.random.default_rng(n)
    if kind == "ties":
        x = rng.integers(0, 4, size=(12, n)).astype(float)
    elif kind == "cauchy":
        x = rng.standard_cauchy(size=(12, n))  # standardized values far beyond the table
    elif kind == "offset":  # re-centred rows (float32: screened in float64 after that)
        x = 1e4 + rng.normal(size=(12, n)) * np.logspace(-3, 3, 12)[:, None]
    elif kind == "quantiles":  # every gap close to the largest: many candidates
        x = np.tile(st.norm.ppf((np.arange(n) + 0.5) / n), (12, 1)) * (1 + np.arange(12))[:, None]
        x[:, 0] -= 1e-3 * np.arange(12)
    else:
        x = _groups(rng, kind, 12, n)
    x = x.astype(dtype)
    out = normality_kernel(x, tests=("shapiro",))
    x = x.astype(np.float64)
    for i, row in enumerate(x):
        if np.ptp(row) == 0:
            continue
        z = (row - row.mean()) / row.std(ddof=1)
        # both sides standardize in float64: rows far from 0 lose digits in either
        tol = 1e-13 + 1e-15 * abs(row.mean()) / row.std()
        assert abs(out["ks_distance"][i] - st.kstest(z, "norm").statistic) < tol

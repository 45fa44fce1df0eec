"""Kernels behind ts.shift / ts.correlate against scipy, statsmodels and brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
from scipy.stats._stats_py import _compute_prob_outside_square

from tensorstats.kernels import correlation, shift


def test_float32_tag_merge_equals_stable_argsort_merge():
    rng = np.random.default_rng(0)
    # ties across and within samples, both zeros, negatives, subnormal-ish values
    pool = np.array([-2.5, -1.0, -0.0, 0.0, 1e-38, 1.0, 1.0, 3.25], np.float32)
    xs = np.sort(rng.choice(pool, size=(50, 40)), axis=-1)
    rs = np.sort(rng.choice(pool, size=(50, 33)), axis=-1)
    v32, from_x32 = shift._merge(xs, rs)
    v32, from_x32 = v32.copy(), from_x32.copy()
    v64, from_x64 = shift._merge(xs.astype(np.float64), rs.astype(np.float64))
    np.testing.assert_array_equal(v32, v64)
    # the order inside a run of ties may differ, the counts up to each run's end may not
    ends = np.ones(v64.shape, bool)
    ends[:, :-1] = v64[:, 1:] != v64[:, :-1]
    np.testing.assert_array_equal(np.cumsum(from_x32, -1)[ends], np.cumsum(from_x64, -1)[ends])
    a = shift.shift_kernel(xs, rs, metrics=shift.METRICS)
    b = shift.shift_kernel(xs.astype(np.float64), rs.astype(np.float64), metrics=shift.METRICS)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-14, atol=1e-15, err_msg=k)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50, 333, 2048])
def test_exact_equal_n_ks_pvalue_matches_scipys_routine(n):
    hs = np.arange(0, n + 1) if n <= 50 else np.unique(np.r_[np.arange(60), np.arange(0, n, 37)])
    ours = shift.ks_exact_equal_n(hs, n)
    ref = np.array([1.0 if h == 0 else min(1.0, _compute_prob_outside_square(n, int(h)))
                    for h in hs])
    np.testing.assert_allclose(ours, ref, atol=1e-9)


@pytest.mark.parametrize("method", ["exact", "asymp", "auto"])
def test_ks_pvalue_unequal_sizes_matches_ks_2samp(method):
    rng = np.random.default_rng(1)
    for n, m in [(10, 13), (200, 150), (40, 40)]:
        x, r = rng.normal(size=(4, n)), rng.normal(0.3, 1, size=(4, m))
        out = shift.shift_kernel(x, r, metrics=("ks",), ks_method=method)
        for i in range(4):
            ref = st.ks_2samp(x[i], r[i], method=method)
            assert abs(out["ks"][i] - ref.statistic) < 1e-12
            assert abs(out["ks_pvalue"][i] - ref.pvalue) < 1e-9


def test_js_bins_follow_the_documented_rule():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 7, size=(3, 100)).astype(float)  # heavy ties
    r = rng.normal(3, 2, size=(3, 64)).round(1)
    out = shift.shift_kernel(x, r, metrics=("js", "hellinger"))
    for i in range(3):
        pooled = np.sort(np.concatenate([x[i], r[i]]))
        b = shift.n_bins(100, 64)
        assert b == 8
        edges = pooled[(np.arange(1, b) * len(pooled)) // b - 1]
        below = [pooled[pooled < s.min()][-1:] for s in (x[i], r[i])]
        edges = np.sort(np.concatenate([edges, [x[i].max(), r[i].max()], *below]))
        cx = np.searchsorted(np.sort(x[i]), edges, side="right")
        cr = np.searchsorted(np.sort(r[i]), edges, side="right")
        p = np.diff(np.r_[0, cx, 100]) / 100
        q = np.diff(np.r_[0, cr, 64]) / 64
        mid = (p + q) / 2

        def kl(a, c):
            nz = a > 0
            return np.sum(a[nz] * np.log2(a[nz] / c[nz]))

        np.testing.assert_allclose(out["js"][i], 0.5 * kl(p, mid) + 0.5 * kl(q, mid), rtol=1e-12)
        np.testing.assert_allclose(out["hellinger"][i], np.sqrt(1 - np.sqrt(p * q).sum()),
                                   rtol=1e-12)


def test_empty_sides_give_nan():
    x = np.full((2, 5), np.nan)
    x[1] = np.arange(5.0)
    r = np.arange(8.0)[None].repeat(2, 0)
    out = shift.shift_kernel(x, r, metrics=shift.METRICS)
    assert np.isnan(out["wasserstein"][0]) and out["n"][0] == 0
    np.testing.assert_allclose(out["wasserstein"][1], st.wasserstein_distance(x[1], r[1]))


# ---------------------------------------------------------------- correlation
def test_detrend_linear_matches_numpy_polyfit():
    rng = np.random.default_rng(3)
    t = np.arange(0, 300, 10.0)
    x = rng.normal(size=(4, 30)) + 0.05 * t
    x[1, [3, 17]] = np.nan
    out = correlation.detrend(x, "linear", t)
    for i in range(4):
        ok = np.isfinite(x[i])
        coef = np.polyfit(t[ok], x[i, ok], 1)
        np.testing.assert_allclose(out[i, ok], x[i, ok] - np.polyval(coef, t[ok]), atol=1e-10)
        assert np.isnan(out[i, ~ok]).all()


@pytest.mark.parametrize("method", ["pearson", "spearman", "kendall"])
def test_lagged_correlation_brute_force(method):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 40))
    y = rng.normal(size=40) + np.r_[np.zeros(2), x[0, :-2]]
    x[2, 5] = np.nan
    lags = np.arange(-3, 4)
    r, p, n = correlation.lagged_correlation(x, y, lags, method)
    ref = {"pearson": st.pearsonr, "spearman": st.spearmanr, "kendall": st.kendalltau}[method]
    for i in range(3):
        for j, k in enumerate(lags):
            a = x[i, :40 - k] if k >= 0 else x[i, -k:]
            b = y[k:] if k >= 0 else y[:40 + k]
            ok = np.isfinite(a) & np.isfinite(b)
            res = ref(a[ok], b[ok])
            assert n[i, j] == ok.sum()
            np.testing.assert_allclose(r[i, j], res.statistic, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(p[i, j], res.pvalue, rtol=1e-8, atol=1e-14)
    assert lags[np.argmax(r[0])] == 2  # y follows x by two positions


def test_granger_matches_statsmodels():
    from statsmodels.tsa.stattools import grangercausalitytests

    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 80))
    y = np.r_[0.0, x[0, :-1]] + rng.normal(size=80)
    x[1, :3] = np.nan  # leading gap is trimmed
    stat, p, n = correlation.granger(x, y, 3)
    for i in range(2):
        ok = np.isfinite(x[i])
        res = grangercausalitytests(np.column_stack([y[ok], x[i, ok]]), maxlag=3)
        for k in range(1, 4):
            f, pv = res[k][0]["ssr_ftest"][:2]
            np.testing.assert_allclose(stat[i, k - 1], f, rtol=1e-10)
            np.testing.assert_allclose(p[i, k - 1], pv, rtol=1e-8, atol=1e-300)
            assert n[i, k - 1] == ok.sum()
    gap = x.copy()
    gap[0, 40] = np.nan
    assert np.isnan(correlation.granger(gap, y, 2)[0][0]).all()


def test_correlate_aligns_shared_dims_by_label():
    import xarray as xr

    import tensorstats as ts

    rng = np.random.default_rng(6)
    x = xr.DataArray(rng.normal(size=(2, 30)), dims=("run", "step"),
                     coords={"run": ["a", "b"], "step": np.arange(30)})
    y = x.sel(run=["b", "a"]) * 2 + 1  # same series, runs in the other order
    res = ts.correlate(x, y, method="pearson")
    np.testing.assert_allclose(res["r"].sel(lag=0), 1.0)


def test_ks_pvalue_follows_scipy_where_its_exact_sum_rounds_above_one():
    # D = 1/7 with n = m = 7: the exact p is 1, scipy's sum gives 1 + 2e-16, so scipy
    # falls back to the asymptotic value (found by Hypothesis); match scipy.
    import warnings

    x, r = np.zeros((1, 7)), np.r_[np.zeros(6), 1.0][None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = st.ks_2samp(x[0], r[0])
    out = shift.shift_kernel(x, r, metrics=("ks",))
    np.testing.assert_allclose(out["ks_pvalue"][0], ref.pvalue, rtol=1e-12)


def test_a_shared_reference_is_not_copied_per_group():
    # reference="initial" broadcasts step 0 over every step; the kernel must sort it
    # once instead of materializing one copy per step (which would be as big as da).
    import tracemalloc

    import xarray as xr

    import tensorstats as ts

    x = np.random.default_rng(7).standard_normal((200, 4, 4096))  # 26 MB
    da = xr.DataArray(x, dims=("step", "channel", "v"))
    ts.shift(da.isel(step=slice(0, 3)), metrics=("wasserstein",))  # warm caches and pools
    tracemalloc.start()
    try:
        res = ts.shift(da, metrics=("wasserstein",))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * x.nbytes, f"peak {peak / 2**20:.1f} MiB for {x.nbytes / 2**20:.0f} MiB"
    np.testing.assert_allclose(res["wasserstein"][5, 2],
                               st.wasserstein_distance(x[5, 2], x[0, 2]), rtol=1e-12)


def test_js_bounds_identical_and_disjoint():
    """0 for identical samples, exactly 1 bit for disjoint supports (with any sizes,
    including the two groups of 5000 an outside check reported at 0.986 bits)."""
    rng = np.random.default_rng(5)
    same = rng.normal(size=(1, 5000))
    assert shift.shift_kernel(same, same.copy(), metrics=("js",))["js"][0] == 0
    for n, m in ((5000, 5000), (300, 7), (11, 900)):
        lo, hi = rng.uniform(0, 1, size=(1, n)), rng.uniform(2, 3, size=(1, m))
        for a, b in ((lo, hi), (hi, lo)):
            out = shift.shift_kernel(a, b, metrics=("js", "hellinger"))
            assert out["js"][0] == pytest.approx(1.0, abs=1e-12)
            assert out["hellinger"][0] == pytest.approx(1.0, abs=1e-12)
    # touching supports (one shared value) are not disjoint: just under 1
    a, b = np.r_[np.linspace(0, 1, 99), 1.5][None], np.r_[1.5, np.linspace(2, 3, 99)][None]
    assert 0.9 < shift.shift_kernel(a, b, metrics=("js",))["js"][0] < 1

"""Reference tests of ``ts.correlate`` and ``ts.granger`` against scipy / statsmodels.

Expected values are computed here, series by series and lag by lag: alignment,
detrending and lag pairing with numpy, then scipy.stats.pearsonr / spearmanr /
kendalltau, statsmodels' grangercausalitytests and multipletests(fdr_bh).
Nothing is taken from the implementation under test.
"""

from __future__ import annotations

import warnings
import zlib

import dask
import dask.array
import numpy as np
import pytest
import scipy.stats as st
import xarray as xr
from numpy.testing import assert_allclose, assert_array_equal
from statsmodels.stats.multitest import multipletests
from statsmodels.tsa.stattools import grangercausalitytests

import tensorstats as ts
from conftest import raise_if_dask_computes

METHODS = ("pearson", "spearman", "kendall")
DETRENDS = (None, "difference", "linear")
R_RTOL = 1e-9
R_ATOL = 1e-12
P_ATOL = 1e-6
P_RTOL = 1e-6


# --------------------------------------------------------------------------- helpers


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def ref_detrend(v: np.ndarray, kind, t: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if kind is None:
        return v
    if kind == "difference":
        return np.diff(v)
    if kind == "linear":
        f = np.isfinite(v)
        if f.sum() < 2:
            return np.full_like(v, np.nan)
        fit = st.linregress(t[f], v[f])
        return v - (fit.intercept + fit.slope * t)
    raise AssertionError(kind)


def lag_pairs(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(x)
    if k >= 0:
        return x[: n - k], y[k:]
    return x[-k:], y[: n + k]


def ref_corr(a: np.ndarray, b: np.ndarray, method: str) -> tuple[float, float, int]:
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(ok.sum())
    if n < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return np.nan, np.nan, n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "pearson":
            res = st.pearsonr(a, b)
        elif method == "spearman":
            res = st.spearmanr(a, b)
        else:
            res = st.kendalltau(a, b)
    return float(res.statistic), float(res.pvalue), n


def ref_fdr(p: np.ndarray) -> np.ndarray:
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


def aligned_exact(x: xr.DataArray, y: xr.DataArray, dim="step"):
    """Common labels, in x's order (computed with numpy)."""
    common = [v for v in x[dim].values if v in set(y[dim].values.tolist())]
    return np.asarray(common)


def expected_correlate(xv: np.ndarray, yv: np.ndarray, t: np.ndarray, *, method, detrend,
                       max_lag) -> dict:
    """xv: (G, T) series already aligned; yv: (G, T) or (T,). Returns arrays (L, G)."""
    lags = range(-max_lag, max_lag + 1)
    G = xv.shape[0]
    r = np.full((len(lags), G), np.nan)
    p = np.full((len(lags), G), np.nan)
    n = np.zeros((len(lags), G), dtype=np.int64)
    for g in range(G):
        xs = ref_detrend(xv[g], detrend, t)
        ys = ref_detrend(yv[g] if yv.ndim == 2 else yv, detrend, t)
        for i, k in enumerate(lags):
            r[i, g], p[i, g], n[i, g] = ref_corr(*lag_pairs(xs, ys, k), method)
    return {"r": r, "pvalue": p, "n": n, "pvalue_fdr": ref_fdr(p)}


def check_correlate(res: xr.Dataset, expected: dict, other_dims: tuple, err=""):
    assert list(res.data_vars) == ["r", "pvalue", "pvalue_fdr", "n"]
    for name in res.data_vars:
        assert res[name].dims == ("lag", *other_dims), (name, res[name].dims)
    shape = res["r"].shape
    assert res["n"].dtype == np.int64
    assert_array_equal(res["n"].values, expected["n"].reshape(shape), err_msg=f"n {err}")
    assert_allclose(res["r"].values, expected["r"].reshape(shape), rtol=R_RTOL, atol=R_ATOL,
                    equal_nan=True, err_msg=f"r {err}")
    for name in ("pvalue", "pvalue_fdr"):
        assert_allclose(res[name].values, expected[name].reshape(shape), rtol=P_RTOL,
                        atol=P_ATOL, equal_nan=True, err_msg=f"{name} {err}")


def _sprinkle(v: np.ndarray, rng, frac=0.08) -> np.ndarray:
    v = v.copy()
    mask = rng.random(v.shape) < frac
    v[mask] = np.nan
    return v


def make_xy(seed=0, T=45):
    """x (channel, step, moment) and y (step) on overlapping, irregular step labels."""
    rng = np.random.default_rng(_seed("corr", seed, T))
    labels = np.cumsum(rng.integers(1, 15, size=T + 12))
    x_labels = np.sort(rng.choice(labels, size=T, replace=False))
    y_labels = np.sort(rng.choice(labels, size=T, replace=False))
    base = np.cumsum(rng.normal(size=labels.size))  # a shared trend for real correlation
    ymap = dict(zip(labels.tolist(), base, strict=True))
    yv = np.array([ymap[v] for v in y_labels.tolist()]) + 0.5 * rng.normal(size=T)
    xv = np.empty((3, T, 2))
    for c in range(3):
        for m in range(2):
            w = (c - 1) * 0.7 + m * 0.3
            xv[c, :, m] = w * np.array([ymap[v] for v in x_labels.tolist()]) \
                + rng.normal(size=T)
    xv = _sprinkle(xv, rng)
    xv[0, 5, 0] = np.inf
    yv = _sprinkle(yv, rng)
    x = xr.DataArray(xv, dims=("channel", "step", "moment"),
                     coords={"step": x_labels, "channel": ["a", "b", "c"],
                             "moment": ["mean", "var"]})
    y = xr.DataArray(yv, dims="step", coords={"step": y_labels})
    return x, y


def _flatten_x(x: xr.DataArray, steps: np.ndarray, dim="step") -> np.ndarray:
    other = [d for d in x.dims if d != dim]
    return x.sel({dim: steps}).transpose(*other, dim).values.reshape(-1, len(steps))


# --------------------------------------------------------------------------- (1) scipy agreement


@pytest.mark.parametrize("detrend", DETRENDS, ids=str)
@pytest.mark.parametrize("method", METHODS)
def test_correlate_matches_scipy(method, detrend):
    x, y = make_xy()
    steps = aligned_exact(x, y)
    assert 20 < len(steps) < x.sizes["step"]  # a real inner join
    res = ts.correlate(x, y, method=method, detrend=detrend, max_lag=3)
    assert isinstance(res["r"].data, np.ndarray)
    assert_array_equal(res["lag"].values, np.arange(-3, 4))
    assert_array_equal(res["channel"].values, ["a", "b", "c"])
    yv = y.sel(step=steps).values
    expected = expected_correlate(_flatten_x(x, steps), yv, steps.astype(float),
                                  method=method, detrend=detrend, max_lag=3)
    # results are (lag, channel, moment); expected is (lag, channel*moment)
    check_correlate(res, expected, ("channel", "moment"), err=f"{method} {detrend}")
    # the data really correlate at lag 0 without detrending (the test is not vacuous)
    if detrend is None:
        assert np.nanmax(np.abs(res["r"].sel(lag=0).values)) > 0.5


@pytest.mark.parametrize("method", METHODS)
def test_correlate_dask_matches_numpy_and_scipy(method):
    x, y = make_xy(seed=1)
    steps = aligned_exact(x, y)
    lazy = ts.correlate(x.chunk({"channel": 1, "step": 10}), y.chunk({"step": 7}),
                        method=method, detrend="linear", max_lag=2)
    assert isinstance(lazy["r"].data, dask.array.Array)
    lazy = lazy.compute()
    eager = ts.correlate(x, y, method=method, detrend="linear", max_lag=2)
    for name in eager.data_vars:
        assert_allclose(lazy[name].values, eager[name].values, rtol=1e-12, atol=0,
                        equal_nan=True, err_msg=name)
    expected = expected_correlate(_flatten_x(x, steps), y.sel(step=steps).values,
                                  steps.astype(float), method=method, detrend="linear",
                                  max_lag=2)
    check_correlate(lazy, expected, ("channel", "moment"), err=method)


def test_default_method_is_spearman_and_lag_zero():
    x, y = make_xy(seed=2)
    steps = aligned_exact(x, y)
    res = ts.correlate(x, y)
    assert_array_equal(res["lag"].values, [0])
    expected = expected_correlate(_flatten_x(x, steps), y.sel(step=steps).values,
                                  steps.astype(float), method="spearman", detrend=None,
                                  max_lag=0)
    check_correlate(res, expected, ("channel", "moment"))


def test_y_with_broadcasting_dims():
    """y carries a run dim: each run's series pairs with its own y."""
    rng = np.random.default_rng(3)
    T = 30
    steps = np.arange(T) * 5
    xv = rng.normal(size=(2, 3, T)).cumsum(-1)
    yv = rng.normal(size=(2, T)).cumsum(-1)
    yv[1] += xv[1, 0]  # run r1 / channel 0 truly related
    x = xr.DataArray(xv, dims=("run", "channel", "step"),
                     coords={"run": ["r0", "r1"], "step": steps})
    y = xr.DataArray(yv, dims=("run", "step"), coords={"run": ["r0", "r1"], "step": steps})
    res = ts.correlate(x, y, method="pearson", detrend="difference", max_lag=1)
    assert res["r"].dims == ("lag", "run", "channel")
    assert_array_equal(res["run"].values, ["r0", "r1"])
    ys = np.repeat(yv, 3, axis=0)  # (run*channel, T) in x's order
    expected = expected_correlate(xv.reshape(6, T), ys, steps.astype(float), method="pearson",
                                  detrend="difference", max_lag=1)
    check_correlate(res, expected, ("run", "channel"))


@pytest.mark.parametrize("method", METHODS)
def test_tied_values_match_scipy(method):
    """Rounded data: ties in ranks (spearman) and tau-b's tie correction (kendall)."""
    rng = np.random.default_rng(_seed("ties", method))
    T = 40
    steps = np.arange(T)
    yv = np.round(rng.normal(size=T).cumsum() / 2)
    xv = np.round(np.stack([yv + rng.normal(size=T), rng.normal(size=T)]))
    xv[0, 7] = np.nan
    x = xr.DataArray(xv, dims=("channel", "step"), coords={"step": steps})
    y = xr.DataArray(yv, dims="step", coords={"step": steps})
    res = ts.correlate(x, y, method=method, max_lag=2)
    expected = expected_correlate(xv, yv, steps.astype(float), method=method, detrend=None,
                                  max_lag=2)
    check_correlate(res, expected, ("channel",), err=method)
    if method == "kendall":  # tau-b really differs from tau-c on these data
        ok = np.isfinite(xv[0])
        tau_c = st.kendalltau(xv[0][ok], yv[ok], variant="c").statistic
        assert abs(tau_c - float(res["r"].sel(lag=0).values[0])) > 1e-3


def test_short_and_constant_series_give_nan():
    T = 12
    steps = np.arange(T)
    rng = np.random.default_rng(4)
    xv = rng.normal(size=(4, T))
    xv[0] = 2.5                              # constant
    xv[1, 2:] = np.nan                       # 2 finite pairs
    xv[2, 3:] = np.nan                       # exactly 3 finite pairs
    yv = rng.normal(size=T)
    x = xr.DataArray(xv, dims=("channel", "step"), coords={"step": steps})
    y = xr.DataArray(yv, dims="step", coords={"step": steps})
    for method in METHODS:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = ts.correlate(x, y, method=method, max_lag=1)
        expected = expected_correlate(xv, yv, steps.astype(float), method=method,
                                      detrend=None, max_lag=1)
        check_correlate(res, expected, ("channel",), err=method)
        r0 = res["r"].sel(lag=0)
        assert np.isnan(r0.values[0]) and np.isnan(r0.values[1])
        assert np.isfinite(r0.values[2]) and np.isfinite(r0.values[3])
        assert res["n"].sel(lag=0).values.tolist() == [T, 2, 3, T]
    # a constant y: everything NaN, and no FDR values invented
    res = ts.correlate(x, y * 0 + 1.0, method="pearson")
    assert np.all(np.isnan(res["r"].values)) and np.all(np.isnan(res["pvalue_fdr"].values))


def test_fdr_is_over_all_series_and_lags():
    """Hand-check that BH runs once over every non-NaN p-value of the result."""
    x, y = make_xy(seed=5)
    res = ts.correlate(x, y, method="pearson", max_lag=2)
    p = res["pvalue"].values
    ok = ~np.isnan(p)
    assert ok.sum() > 20
    want = np.full(p.shape, np.nan)
    want[ok] = multipletests(p[ok], method="fdr_bh")[1]
    assert_allclose(res["pvalue_fdr"].values, want, rtol=1e-9, atol=1e-12, equal_nan=True)
    # per-lag correction would give something else
    per_lag = multipletests(p[0][ok[0]], method="fdr_bh")[1]
    assert not np.allclose(per_lag, want[0][ok[0]])


def test_bad_arguments():
    x, y = make_xy()
    with pytest.raises(ValueError):
        ts.correlate(x, y, method="cosine")
    with pytest.raises(ValueError):
        ts.correlate(x, y, detrend="quadratic")
    with pytest.raises(ValueError):
        ts.correlate(x, y, max_lag=-1)
    with pytest.raises(ValueError):
        ts.correlate(x, y, align="nearest")
    with pytest.raises(ValueError):
        ts.granger(x, y, max_lag=0)


# --------------------------------------------------------------------------- (2) random walks


def test_random_walks_spurious_correlation_and_differencing():
    n_seeds, T = 200, 200
    rng = np.random.default_rng(2024)
    xv = np.cumsum(rng.normal(size=(n_seeds, T)), axis=-1)
    yv = np.cumsum(rng.normal(size=(n_seeds, T)), axis=-1)
    steps = np.arange(T)
    x = xr.DataArray(xv, dims=("seed", "step"), coords={"seed": np.arange(n_seeds),
                                                        "step": steps})
    y = xr.DataArray(yv, dims=("seed", "step"), coords={"seed": np.arange(n_seeds),
                                                        "step": steps})
    raw = ts.correlate(x, y, method="pearson")["pvalue"].sel(lag=0).values
    diff = ts.correlate(x, y, method="pearson", detrend="difference")["pvalue"].sel(lag=0).values
    want_raw = np.array([st.pearsonr(xv[s], yv[s]).pvalue for s in range(n_seeds)])
    want_diff = np.array([st.pearsonr(np.diff(xv[s]), np.diff(yv[s])).pvalue
                          for s in range(n_seeds)])
    assert_allclose(raw, want_raw, rtol=P_RTOL, atol=P_ATOL)
    assert_allclose(diff, want_diff, rtol=P_RTOL, atol=P_ATOL)
    rate_raw = np.mean(raw < 0.05)
    rate_diff = np.mean(diff < 0.05)
    assert rate_raw > 0.40, rate_raw
    assert 0.01 <= rate_diff <= 0.10, rate_diff


# --------------------------------------------------------------------------- (3) lead / lag


@pytest.mark.parametrize("method", METHODS)
def test_leading_series_peaks_at_its_lead(method):
    k, T = 3, 300
    rng = np.random.default_rng(_seed("lead", method))
    xv = rng.normal(size=T + k)
    yv = xv[:-k] + 0.5 * rng.normal(size=T)       # y[t] = x[t - k] + noise
    xv = xv[k:]
    steps = np.arange(T) * 10
    x = xr.DataArray(xv, dims="step", coords={"step": steps})
    y = xr.DataArray(yv, dims="step", coords={"step": steps})
    # check the construction with numpy: x_t pairs with y_{t+k}
    assert np.allclose(np.corrcoef(xv[:-k], yv[k:])[0, 1], 0.89, atol=0.05)
    res = ts.correlate(x, y, method=method, max_lag=6)
    r = res["r"]
    assert int(r["lag"][np.argmax(np.abs(r.values))]) == k
    expected = expected_correlate(xv[None], yv, steps.astype(float), method=method,
                                  detrend=None, max_lag=6)
    check_correlate(res, expected, (), err=method)
    # the mirrored lead shows at -k
    res = ts.correlate(y, x, method=method, max_lag=6)
    assert int(res["r"]["lag"][np.argmax(np.abs(res["r"].values))]) == -k


# --------------------------------------------------------------------------- (4) align="mean"


def _interval_means(x_labels: np.ndarray, y_labels: np.ndarray, yv: np.ndarray) -> np.ndarray:
    out = np.full(len(x_labels), np.nan)
    prev = -np.inf
    for i, t in enumerate(x_labels):
        sel = (y_labels > prev) & (y_labels <= t)
        vals = yv[sel]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            out[i] = vals.sum() / vals.size
        prev = t
    return out


def test_interval_mean_helper_by_hand():
    # y labels 0..9, x labels 2, 5, 9: means of {0,1,2}, {3,4,5}, {6..9}
    m = _interval_means(np.array([2, 5, 9]), np.arange(10), np.arange(10.0))
    assert_allclose(m, [1.0, 4.0, 7.5])


@pytest.mark.parametrize("lazy", [False, True])
@pytest.mark.parametrize("method", ["pearson", "kendall"])
def test_align_mean_matches_hand_computed_interval_means(method, lazy):
    rng = np.random.default_rng(_seed("align-mean", method))
    x_labels = np.cumsum(rng.integers(3, 12, size=30)) + 4
    y_labels = np.arange(0, x_labels[-1] + 15)          # dense loss, beyond x's last label
    trend = np.interp(y_labels, x_labels, rng.normal(size=30).cumsum())
    yv = trend + 0.5 * rng.normal(size=y_labels.size)
    yv = _sprinkle(yv, rng, 0.15)
    gap = (y_labels > x_labels[6]) & (y_labels <= x_labels[7])
    yv[gap] = np.nan                                     # one interval with no finite loss
    xv = np.stack([trend[np.searchsorted(y_labels, x_labels)] + rng.normal(size=30),
                   rng.normal(size=30)])
    xv[1, 3] = np.nan
    x = xr.DataArray(xv, dims=("channel", "step"), coords={"step": x_labels})
    y = xr.DataArray(yv, dims="step", coords={"step": y_labels})
    if lazy:
        x, y = x.chunk({"step": 11}), y.chunk({"step": 50})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of an all-NaN interval
        res = ts.correlate(x, y, method=method, align="mean", max_lag=1).compute()
    ymean = _interval_means(x_labels, y_labels, yv)
    assert np.isnan(ymean[7]) and np.isfinite(ymean).sum() == 29
    expected = expected_correlate(xv, ymean, x_labels.astype(float), method=method,
                                  detrend=None, max_lag=1)
    check_correlate(res, expected, ("channel",), err=method)
    # the means differ from simply picking y at x's labels
    exact = ts.correlate(x, y, method=method, max_lag=1).compute()
    assert not np.allclose(exact["r"].values, res["r"].values, equal_nan=True)


def test_align_mean_first_interval_takes_every_earlier_label():
    """y labels below x's first label all go into the first mean."""
    x_labels = np.array([10, 20, 30, 40, 50, 60])
    y_labels = np.arange(-30, 61, 5)
    yv = np.sin(y_labels / 7.0) + y_labels / 50.0
    xv = np.array([0.3, -1.2, 0.8, 2.0, -0.4, 1.1])
    ymean = _interval_means(x_labels, y_labels, yv)
    assert_allclose(ymean[0], np.mean(yv[y_labels <= 10]))
    x = xr.DataArray(xv, dims="step", coords={"step": x_labels})
    y = xr.DataArray(yv, dims="step", coords={"step": y_labels})
    res = ts.correlate(x, y, method="pearson", align="mean")
    want = st.pearsonr(xv, ymean)
    assert_allclose(float(res["r"].item()), want.statistic, rtol=R_RTOL)
    assert_allclose(float(res["pvalue"].item()), want.pvalue, rtol=P_RTOL, atol=P_ATOL)


# --------------------------------------------------------------------------- (5) laziness


def test_lazy_until_compute_and_equal_to_numpy():
    x, y = make_xy(seed=6)
    xl = x.chunk({"channel": 1, "step": 9, "moment": 1})
    yl = y.chunk({"step": 13})
    with raise_if_dask_computes():
        c = ts.correlate(xl, yl, method="spearman", detrend="linear", max_lag=2)
        g = ts.granger(xl.fillna(0.0), yl.fillna(0.0), max_lag=2, detrend="difference")
        cm = ts.correlate(xl, yl, method="pearson", align="mean", max_lag=1)
        for ds in (c, g, cm):
            for name in ds.data_vars:
                assert isinstance(ds[name].data, dask.array.Array), name
    pairs = ((c, ts.correlate(x, y, method="spearman", detrend="linear", max_lag=2)),
             (g, ts.granger(x.fillna(0.0), y.fillna(0.0), max_lag=2, detrend="difference")),
             (cm, ts.correlate(x, y, method="pearson", align="mean", max_lag=1)))
    for lazy, eager in pairs:
        got = lazy.compute()
        assert isinstance(eager[next(iter(eager.data_vars))].data, np.ndarray)
        for name in eager.data_vars:
            assert got[name].dims == eager[name].dims
            assert_allclose(got[name].values, eager[name].values, rtol=1e-12, atol=0,
                            equal_nan=True, err_msg=name)


# --------------------------------------------------------------------------- granger


def ref_granger(xs: np.ndarray, ys: np.ndarray, max_lag: int):
    """(statistic, pvalue) per lag 1..max_lag, from statsmodels, NaN where undefined."""
    stat = np.full(max_lag, np.nan)
    pval = np.full(max_lag, np.nan)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if not ok.any():
        return stat, pval
    i0 = int(np.argmax(ok))
    i1 = len(ok) - int(np.argmax(ok[::-1]))
    xs, ys = xs[i0:i1], ys[i0:i1]
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        return stat, pval  # a gap inside
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = grangercausalitytests(np.column_stack([ys, xs]), maxlag=max_lag)
    except ValueError:
        return stat, pval  # too short for statsmodels
    for k in range(1, max_lag + 1):
        stat[k - 1], pval[k - 1] = res[k][0]["ssr_ftest"][0:2]
    return stat, pval


def expected_granger(xv, yv, t, *, max_lag, detrend):
    G = xv.shape[0]
    stat = np.full((max_lag, G), np.nan)
    pval = np.full((max_lag, G), np.nan)
    for g in range(G):
        xs = ref_detrend(xv[g], detrend, t)
        ys = ref_detrend(yv[g] if yv.ndim == 2 else yv, detrend, t)
        stat[:, g], pval[:, g] = ref_granger(xs, ys, max_lag)
    return {"statistic": stat, "pvalue": pval, "pvalue_fdr": ref_fdr(pval)}


def check_granger(res, expected, other_dims, max_lag, err=""):
    assert list(res.data_vars) == ["statistic", "pvalue", "pvalue_fdr", "n"]
    assert_array_equal(res["lag"].values, np.arange(1, max_lag + 1))
    for name in res.data_vars:
        assert res[name].dims == ("lag", *other_dims), (name, res[name].dims)
    assert res["n"].dtype == np.int64
    shape = res["statistic"].shape
    assert_allclose(res["statistic"].values, expected["statistic"].reshape(shape), rtol=1e-9,
                    atol=1e-12, equal_nan=True, err_msg=f"statistic {err}")
    for name in ("pvalue", "pvalue_fdr"):
        assert_allclose(res[name].values, expected[name].reshape(shape), rtol=P_RTOL,
                        atol=P_ATOL, equal_nan=True, err_msg=f"{name} {err}")


def make_granger_xy(seed=0, T=80):
    rng = np.random.default_rng(_seed("granger", seed, T))
    yv = rng.normal(size=T)
    xv = rng.normal(size=(5, T))
    yv[2:] += 0.6 * xv[1, :-2]          # channel 1 leads y by 2
    yv = np.cumsum(yv) * 0.1 + yv       # some trend
    xv[2, :4] = np.nan                   # leading NaN: trimmed
    xv[3, -3:] = np.nan                  # trailing NaN: trimmed
    xv[4, 40] = np.nan                   # gap inside: NaN
    return xv, yv


@pytest.mark.parametrize("detrend", DETRENDS, ids=str)
def test_granger_matches_statsmodels(detrend):
    T, max_lag = 80, 3
    xv, yv = make_granger_xy(T=T)
    steps = np.cumsum(np.random.default_rng(1).integers(1, 9, size=T))
    x = xr.DataArray(xv, dims=("channel", "step"), coords={"step": steps})
    y = xr.DataArray(yv, dims="step", coords={"step": steps})
    res = ts.granger(x, y, max_lag=max_lag, detrend=detrend)
    assert isinstance(res["pvalue"].data, np.ndarray)
    expected = expected_granger(xv, yv, steps.astype(float), max_lag=max_lag, detrend=detrend)
    assert np.isfinite(expected["pvalue"][:, :4]).all()
    assert np.isnan(expected["pvalue"][:, 4]).all()
    check_granger(res, expected, ("channel",), max_lag, err=str(detrend))
    assert np.all(res["n"].values[:, :4] > 0)


def test_granger_trailing_nan_in_y_and_exact_alignment():
    T = 70
    xv, yv = make_granger_xy(seed=1, T=T)
    yv[-2:] = np.nan
    steps = np.arange(T) * 3
    x = xr.DataArray(xv[:, 5:], dims=("channel", "step"), coords={"step": steps[5:]})
    y = xr.DataArray(yv[:-1], dims="step", coords={"step": steps[:-1]})
    res = ts.granger(x, y, max_lag=2)
    expected = expected_granger(xv[:, 5:-1], yv[5:-1], steps[5:-1].astype(float), max_lag=2,
                                detrend=None)
    check_granger(res, expected, ("channel",), 2)


def test_granger_too_short_is_nan():
    T = 30
    rng = np.random.default_rng(7)
    xv = rng.normal(size=(2, T))
    yv = rng.normal(size=T)
    xv[1, 4:] = np.nan  # 4 values left: too short for max_lag 2 in statsmodels
    x = xr.DataArray(xv, dims=("channel", "step"))
    y = xr.DataArray(yv, dims="step")
    res = ts.granger(x, y, max_lag=2)
    expected = expected_granger(xv, yv, np.arange(T, dtype=float), max_lag=2, detrend=None)
    assert np.isnan(expected["pvalue"][:, 1]).all()
    check_granger(res, expected, ("channel",), 2)


def test_granger_detects_leading_series():
    rng = np.random.default_rng(31)
    T = 150
    lead = rng.normal(size=T)
    y = np.r_[0.0, 0.0, 0.7 * lead[:-2]] + 0.5 * rng.normal(size=T)
    xa = xr.DataArray(lead, dims="step")
    ya = xr.DataArray(y, dims="step")
    fwd = ts.granger(xa, ya, max_lag=3)
    back = ts.granger(ya, xa, max_lag=3)
    s_fwd, p_fwd = ref_granger(lead, y, 3)
    _, p_back = ref_granger(y, lead, 3)
    assert_allclose(fwd["pvalue"].values, p_fwd, rtol=P_RTOL, atol=P_ATOL)
    assert_allclose(back["pvalue"].values, p_back, rtol=P_RTOL, atol=P_ATOL)
    assert_allclose(fwd["statistic"].values, s_fwd, rtol=1e-9)
    # lead of 2: found from lag 2 on, not the other way round
    assert np.all(fwd["pvalue"].sel(lag=[2, 3]).values < 1e-6)
    assert np.all(back["pvalue"].values > 1e-3)


def test_granger_dask_matches_numpy():
    xv, yv = make_granger_xy(seed=2)
    x = xr.DataArray(xv, dims=("channel", "step"))
    y = xr.DataArray(yv, dims="step")
    eager = ts.granger(x, y, max_lag=2, detrend="linear")
    lazy = ts.granger(x.chunk({"channel": 2, "step": 20}), y.chunk({"step": 30}), max_lag=2,
                      detrend="linear")
    assert isinstance(lazy["statistic"].data, dask.array.Array)
    lazy = lazy.compute()
    for name in eager.data_vars:
        assert_allclose(lazy[name].values, eager[name].values, rtol=1e-12, atol=0,
                        equal_nan=True, err_msg=name)
    expected = expected_granger(xv, yv, np.arange(xv.shape[1], dtype=float), max_lag=2,
                                detrend="linear")
    check_granger(lazy, expected, ("channel",), 2)

"""Reference tests of ``ts.normality`` against scipy.stats and statsmodels.

Every expected value is computed here, one group at a time, with scipy / statsmodels
on the finite values of the group; nothing is taken from the implementation under
test.  Groups larger than ``max_samples`` are subsampled by the implementation in a
way the tests cannot reproduce, so for them only properties are checked.
"""

from __future__ import annotations

import warnings

import _reference_data as _data
import numpy as np
import pytest
import scipy.stats as st
import xarray as xr
from _reference_data import chunk as _chunk
from _reference_data import groups as _groups
from _reference_data import is_dask, reference_grid
from _reference_data import kept_in_input_order as _kept_in_input_order
from _reference_data import seed_of as _seed
from numpy.testing import assert_allclose, assert_array_equal
from statsmodels.stats.diagnostic import normal_ad
from statsmodels.stats.multitest import multipletests

import tensorstats as ts
from conftest import raise_if_dask_computes

ALL_TESTS = ("shapiro", "anderson", "dagostino", "jarque_bera")
EFFECTS = ("skew", "kurtosis", "ks_distance")


# --------------------------------------------------------------------------- helpers


def make_da(dist, n, nonfinite, *, nstep=2, nchan=3, dtype=np.float64, seed=0):
    return _data.make_da(dist, n, nonfinite, nstep=nstep, nchan=nchan, dtype=dtype, seed=seed,
                         salt="normality", step0=3, step_spacing=10, channel_prefix="ch",
                         name="act")


def reference_one(values: np.ndarray, tests) -> dict:
    """Expected results for one group that is not subsampled."""
    values = np.asarray(values, dtype=np.float64)
    x = values[np.isfinite(values)]
    n = x.size
    out = {
        "n": n,
        "nan_count": int(np.isnan(values).sum()),
        "inf_count": int(np.isinf(values).sum()),
        "skew": np.nan, "kurtosis": np.nan, "ks_distance": np.nan,
        "anderson_statsmodels": np.nan,
        "anderson_statsmodels_p": np.nan,
    }
    for t in tests:
        out[("statistic", t)] = np.nan
        out[("pvalue", t)] = np.nan
    if n < 3 or x.min() == x.max():
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reference side only
        out["skew"] = st.skew(x, bias=True)
        out["kurtosis"] = st.kurtosis(x, fisher=True, bias=True)
        out["ks_distance"] = st.kstest((x - x.mean()) / x.std(ddof=1), "norm").statistic
        for t in tests:
            if t == "shapiro":
                r = st.shapiro(x)
                stat, p = r.statistic, r.pvalue
            elif t == "anderson":
                stat = st.anderson(x, dist="norm", method="interpolate").statistic
                p = _normal_ad_pvalue(stat, n)
                # statsmodels sums log1p(-cdf(w)), which has no precision left once
                # sf(w) nears the float64 epsilon; cross-check it only where |w| <= 5.
                w = (x - x.mean()) / x.std(ddof=1)
                if np.abs(w).max() <= 5.0:
                    a2_sm, p_sm = normal_ad(x)
                    out["anderson_statsmodels"] = a2_sm
                    out["anderson_statsmodels_p"] = p_sm
            elif t == "dagostino":
                if n < 8:
                    continue
                r = st.normaltest(x)
                stat, p = r.statistic, r.pvalue
            elif t == "jarque_bera":
                r = st.jarque_bera(x)
                stat, p = r.statistic, r.pvalue
            else:
                raise AssertionError(t)
            out[("statistic", t)] = float(stat)
            out[("pvalue", t)] = float(p)
    return out


def _normal_ad_pvalue(a2: float, n: int) -> float:
    """statsmodels.stats.diagnostic.normal_ad's p-value (scalar branch) of a given A².

    Copied from statsmodels 0.15 ``_adnorm.normal_ad`` so that it can be applied to
    scipy's tail-accurate A²; cross-checked against ``normal_ad`` itself below.
    """
    a = a2 * (1 + 0.75 / n + 2.25 / n**2)
    if a < 0.200:
        return 1 - np.exp(-13.436 + 101.14 * a - 223.73 * a**2)
    if a < 0.340:
        return 1 - np.exp(-8.318 + 42.796 * a - 59.938 * a**2)
    if a < 0.600:
        return np.exp(0.9177 - 4.279 * a - 1.38 * a**2)
    if a <= 13:
        return np.exp(1.2937 - 5.709 * a + 0.0186 * a**2)
    return 0.0


def _fdr(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg over all groups, NaN p-values left out of the count."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    out = np.full(flat.shape, np.nan)
    ok = ~np.isnan(flat)
    if ok.any():
        out[ok] = multipletests(flat[ok], method="fdr_bh")[1]
    return out.reshape(p.shape)


def reference(da: xr.DataArray, kept, tests) -> dict:
    kept = tuple(kept)
    kshape = tuple(da.sizes[d] for d in kept)
    keys = None
    out = {}
    for idx, values in _groups(da, kept):
        one = reference_one(values, tests)
        if keys is None:
            keys = list(one)
            out = {k: np.full(kshape, np.nan) for k in keys}
        for k, v in one.items():
            out[k][idx] = v
    for k in ("n", "nan_count", "inf_count"):
        out[k] = out[k].astype(np.int64)
    out["statistic"] = np.stack([out[("statistic", t)] for t in tests])
    out["pvalue"] = np.stack([out[("pvalue", t)] for t in tests])
    out["pvalue_fdr"] = np.stack([_fdr(out[("pvalue", t)]) for t in tests])
    return out


def check_structure(res: xr.Dataset, kept, tests):
    kept = tuple(kept)
    assert isinstance(res, xr.Dataset)
    for k in ("statistic", "pvalue", "pvalue_fdr"):
        assert k in res.data_vars, k
        assert res[k].dims == ("test", *kept), (k, res[k].dims)
    for k in ("n", "nan_count", "inf_count", *EFFECTS):
        assert k in res.data_vars, k
        assert res[k].dims == kept, (k, res[k].dims)
    assert list(res["test"].values) == list(tests)


def check_against_reference(res: xr.Dataset, da: xr.DataArray, kept, tests):
    kept, tests = tuple(kept), tuple(tests)
    check_structure(res, kept, tests)
    exp = reference(da, kept, tests)
    got = {k: np.asarray(res[k].values) for k in res.data_vars}

    assert got["n"].dtype == np.int64, got["n"].dtype
    for k in ("n", "nan_count", "inf_count"):
        assert_array_equal(got[k], exp[k], err_msg=k)
    for k in EFFECTS:
        assert_allclose(got[k], exp[k], rtol=1e-9, atol=1e-12, err_msg=k)

    for i, t in enumerate(tests):
        gs, gp = got["statistic"][i], got["pvalue"][i]
        es, ep = exp["statistic"][i], exp["pvalue"][i]
        msg = f"test={t}"
        if t == "shapiro":
            assert_allclose(gs, es, rtol=0, atol=1e-6, err_msg=msg)
            assert_allclose(gp, ep, rtol=0, atol=1e-6, err_msg=msg)
        elif t == "anderson":
            assert_allclose(gs, es, rtol=1e-9, atol=1e-12, err_msg=msg + " vs scipy")
            assert_allclose(gp, ep, rtol=1e-6, atol=1e-12, err_msg=msg + " pvalue")
            sm, sm_p = exp["anderson_statsmodels"], exp["anderson_statsmodels_p"]
            fin = np.isfinite(sm)
            assert_allclose(gs[fin], sm[fin], rtol=1e-6, err_msg=msg + " vs statsmodels")
            assert_allclose(gp[fin], sm_p[fin], rtol=1e-6, atol=1e-12,
                            err_msg=msg + " pvalue vs statsmodels")
        else:
            assert_allclose(gs, es, rtol=1e-9, atol=1e-12, err_msg=msg)
            assert_allclose(gp, ep, rtol=1e-8, atol=1e-12, err_msg=msg)
        # BH of the reference p-values ...
        assert_allclose(got["pvalue_fdr"][i], exp["pvalue_fdr"][i], rtol=1e-6, atol=1e-6,
                        err_msg=msg + " pvalue_fdr")
        # ... and, tighter, BH of the implementation's own p-values.
        assert_allclose(got["pvalue_fdr"][i], _fdr(gp), rtol=1e-12, atol=1e-15,
                        err_msg=msg + " pvalue_fdr of own pvalues")
    return exp


def _shape(n):
    return {"nstep": 1, "nchan": 2} if n >= 5000 else {"nstep": 2, "nchan": 3}


# --------------------------------------------------------------------------- main grid


@reference_grid
def test_normality_matches_scipy_statsmodels(dist, n, nonfinite, backend):
    da0 = make_da(dist, n, nonfinite, **_shape(n))
    res = ts.normality(_chunk(da0, backend), tests=ALL_TESTS)
    for k in res.data_vars:
        assert is_dask(res[k]) == (backend != "numpy"), k
    res = res.compute()
    check_against_reference(res, da0, ("step", "channel"), ALL_TESTS)
    assert_array_equal(res["step"].values, da0["step"].values)
    assert_array_equal(res["channel"].values, da0["channel"].values)


def test_reference_is_not_vacuous():
    """The grid compares real numbers: most expected values are finite and differ."""
    exp = reference(make_da("heavy", 500, True), ("step", "channel"), ALL_TESTS)
    assert np.isfinite(exp["statistic"]).all() and np.isfinite(exp["pvalue"]).all()
    assert np.isfinite(exp["pvalue_fdr"]).all()
    assert (exp["pvalue_fdr"] >= exp["pvalue"]).all()
    exp = reference(make_da("normal", 20, False), ("step", "channel"), ALL_TESTS)
    assert (exp["pvalue"] > 1e-3).mean() > 0.5


def test_reference_anderson_pvalue_formula_matches_statsmodels():
    """The copied p-value formula agrees with normal_ad on every branch."""
    rng = np.random.default_rng(1)
    samples = [rng.standard_normal(50), rng.uniform(size=30), rng.uniform(size=400),
               rng.exponential(size=60), rng.exponential(size=300), rng.standard_t(2, 3000),
               rng.standard_normal(8), st.norm.ppf((np.arange(40) + 0.5) / 40)]
    seen = set()
    for x in samples:
        a2, p = normal_ad(x)
        a = a2 * (1 + 0.75 / x.size + 2.25 / x.size**2)
        seen.add(int(np.searchsorted([0.2, 0.34, 0.6, 13], a, side="right")))
        assert_allclose(_normal_ad_pvalue(a2, x.size), p, rtol=1e-14, atol=0)
    assert seen == {0, 1, 2, 3, 4}


def test_default_tests_are_shapiro_and_anderson():
    da0 = make_da("uniform", 40, True)
    res = ts.normality(da0)
    check_against_reference(res, da0, ("step", "channel"), ("shapiro", "anderson"))
    assert list(res["test"].values) == ["shapiro", "anderson"]


@pytest.mark.parametrize("tests", [("jarque_bera", "shapiro"), ("dagostino",),
                                   ("anderson", "dagostino", "shapiro", "jarque_bera")])
def test_test_order_is_kept(tests):
    da0 = make_da("bimodal", 30, False)
    res = ts.normality(da0.chunk({"sample": 11}), tests=tests).compute()
    check_against_reference(res, da0, ("step", "channel"), tests)


@pytest.mark.parametrize("backend", ["numpy", "dask-pooled"])
def test_float32_input(backend):
    da0 = make_da("normal", 200, True, dtype=np.float32)
    res = ts.normality(_chunk(da0, backend), tests=ALL_TESTS).compute()
    check_against_reference(res, da0.astype(np.float64), ("step", "channel"), ALL_TESTS)


# --------------------------------------------------------------------------- by / dims


def _by_da():
    rng = np.random.default_rng(21)
    x = rng.standard_t(5, (2, 3, 6, 2, 5))
    x[0, 1, :, 1, 2] = np.nan
    return xr.DataArray(
        x, dims=("run", "step", "x", "channel", "y"),
        coords={"run": ["a", "b"], "step": [1, 2, 4], "channel": [7, 9]},
    )


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    "by", [None, "channel", ("step",), ("channel", "run"), ["x"], ()], ids=repr
)
def test_by_variants(by, chunked):
    da0 = _by_da()
    da = da0.chunk({"x": 4, "y": 2, "run": 1}) if chunked else da0
    tests = ("shapiro", "jarque_bera")
    res = ts.normality(da, tests=tests) if by is None else ts.normality(da, by=by, tests=tests)
    kept = _kept_in_input_order(da0, by)
    res = res.compute()
    check_against_reference(res, da0, kept, tests)
    for d in kept:
        if d in da0.coords:
            assert_array_equal(res[d].values, da0[d].values)


def test_by_empty_gives_0d_per_test():
    da0 = make_da("normal", 100, True)
    res = ts.normality(da0, by=(), tests=ALL_TESTS)
    assert res["statistic"].dims == ("test",)
    assert res["n"].dims == ()
    check_against_reference(res, da0, (), ALL_TESTS)


@pytest.mark.parametrize("chunked", [False, True])
def test_unknown_test_name_raises_naming_it(chunked):
    da = make_da("normal", 20, False)
    if chunked:
        da = da.chunk({"sample": 5})
    with pytest.raises(ValueError, match="bogus_test"):
        ts.normality(da, tests=("shapiro", "bogus_test"))


@pytest.mark.parametrize("by", ["nope", ("step", "nope")], ids=repr)
def test_by_unknown_dim_raises_naming_it(by):
    da = make_da("normal", 20, False)
    with pytest.raises((ValueError, KeyError), match="nope"):
        ts.normality(da, by=by)


# --------------------------------------------------------------------------- degenerate


def _degenerate_da():
    nan, inf = np.nan, np.inf
    m = 12
    rows = {
        "constant": [0.1] * m,
        "constant_big": [1e7 + 0.1] * m,
        "all_nan": [nan] * m,
        "all_inf": [inf, -inf] * (m // 2),
        "one": [nan] * (m - 1) + [1.0],
        "two": [1.0, 3.0] + [nan] * (m - 2),
        "const_nan": [2.0] * (m - 3) + [nan, inf, nan],
        "three": [0.5, -1.0, 2.0] + [nan] * (m - 3),
        "seven": [0.3, -1.2, 2.2, 0.9, -0.4, 1.7, 0.05] + [inf] * (m - 7),
        "eight": [0.3, -1.2, 2.2, 0.9, -0.4, 1.7, 0.05, -2.5] + [nan] * (m - 8),
        "full": [0.3, -1.2, 2.2, 0.9, -0.4, 1.7, 0.05, -2.5, 1.1, 0.0, -0.7, 3.1],
    }
    x = np.array(list(rows.values()), dtype=np.float64)
    return xr.DataArray(x, dims=("channel", "sample"), coords={"channel": list(rows)})


@pytest.mark.parametrize("backend", ["numpy", "dask-pooled", "dask-kept"])
def test_degenerate_groups_give_nan_without_warnings(backend):
    da0 = _degenerate_da()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ts.normality(_chunk(da0, backend), tests=ALL_TESTS)
        res = res.compute(scheduler="synchronous")
    exp = check_against_reference(res, da0, ("channel",), ALL_TESTS)

    ch = list(da0["channel"].values)
    assert_array_equal(res["n"].values, [12, 12, 0, 0, 1, 2, 9, 3, 7, 8, 12])
    bad = ["constant", "constant_big", "all_nan", "all_inf", "one", "two", "const_nan"]
    for name in bad:
        i = ch.index(name)
        for k in ("statistic", "pvalue", "pvalue_fdr"):
            assert np.isnan(res[k].values[:, i]).all(), (name, k)
        for k in EFFECTS:
            assert np.isnan(res[k].values[i]), (name, k)
    stat = res["statistic"].to_pandas()
    # dagostino needs n >= 8; the other three work from n == 3
    for name in ("three", "seven"):
        assert np.isnan(stat.loc["dagostino", name])
        assert np.isfinite(stat.loc[["shapiro", "anderson", "jarque_bera"], name]).all()
    for name in ("eight", "full"):
        assert np.isfinite(stat.loc[:, name]).all()
    # BH only counts the groups that have a p-value: 4 for the three tests, 2 for dagostino.
    assert np.isfinite(exp["pvalue_fdr"]).sum(axis=1).tolist() == [4, 4, 2, 4]


@pytest.mark.parametrize("by", [None, ()], ids=repr)
def test_empty_pooled_dim_gives_nan_without_warnings(by):
    da = xr.DataArray(np.empty((2, 0)), dims=("channel", "sample"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ts.normality(da, by=by, tests=ALL_TESTS)
    assert (res["n"].values == 0).all()
    for k in ("statistic", "pvalue", "pvalue_fdr", *EFFECTS):
        assert np.isnan(res[k].values).all(), k


# --------------------------------------------------------------------------- subsampling


def _big_da(n=20000, seed=0):
    rng = np.random.default_rng(_seed("big", n, seed))
    x = rng.standard_normal((2, n)) * 2 + 1
    x[1] = rng.standard_t(4, n)
    x[1, rng.choice(np.arange(10, n), 1000, replace=False)] = np.nan
    x[1, 5] = np.inf
    return xr.DataArray(x, dims=("channel", "sample"), coords={"channel": ["g", "t"]})


def _assert_same(a: xr.Dataset, b: xr.Dataset, rtol=1e-12):
    for k in a.data_vars:
        assert_allclose(np.asarray(a[k].values, dtype=float), np.asarray(b[k].values, float),
                        rtol=rtol, atol=0, err_msg=k)


@pytest.fixture(scope="module")
def big():
    da0 = _big_da()
    return da0, ts.normality(da0, tests=ALL_TESTS)


def test_subsampled_group_properties(big):
    da0, res = big
    assert_array_equal(res["n"].values, [5000, 5000])
    assert_array_equal(res["nan_count"].values, [0, 1000])
    assert_array_equal(res["inf_count"].values, [0, 1])
    stat = res["statistic"].to_pandas()
    p = res["pvalue"].to_pandas()
    assert ((stat.loc["shapiro"] > 0) & (stat.loc["shapiro"] <= 1)).all()
    assert (stat.loc["shapiro", "g"] > 0.99)  # 5000 normal values
    assert (stat.loc[["anderson", "dagostino", "jarque_bera"]] >= 0).all().all()
    assert ((p >= 0) & (p <= 1)).all().all()
    assert p.loc["jarque_bera", "t"] < 1e-6  # t(4) is far from normal at n=5000
    ks = res["ks_distance"].values
    assert ((ks > 0) & (ks < 1)).all()
    assert ((res["pvalue_fdr"].values >= res["pvalue"].values) | (res["pvalue"].values == 0)).all()
    # The effect sizes are of the same subsample as the tests: Jarque-Bera is exactly
    # n/6 (S² + K²/4) with S, K the (biased) sample skewness and excess kurtosis.
    n = res["n"].values
    jb = n / 6 * (res["skew"].values ** 2 + res["kurtosis"].values ** 2 / 4)
    assert_allclose(stat.loc["jarque_bera"].values, jb, rtol=1e-9)
    # The statistic is of a subsample, not of the whole group (which is known here).
    full = da0.values[0]
    assert stat.loc["jarque_bera", "g"] != st.jarque_bera(full).statistic


def test_subsampling_is_reproducible(big):
    da0, res = big
    _assert_same(res, ts.normality(da0, tests=ALL_TESTS))


@pytest.mark.parametrize("chunks", [{"sample": 7000}, {"sample": 3001, "channel": 1},
                                    {"sample": 20000, "channel": 1}], ids=repr)
def test_subsampling_is_chunk_independent(big, chunks):
    da0, res = big
    lazy = ts.normality(da0.chunk(chunks), tests=ALL_TESTS)
    assert is_dask(lazy["statistic"])
    # Same subsample => same numbers up to summation order (a different subsample of
    # 5000 moves every statistic by far more than 1e-9).
    _assert_same(res, lazy.compute(), rtol=1e-9)


def test_subsampling_depends_on_seed(big):
    da0, res = big
    other = ts.normality(da0, tests=ALL_TESTS, seed=1)
    assert_array_equal(other["n"].values, [5000, 5000])
    s0, s1 = res["statistic"].values, other["statistic"].values
    assert (s0 != s1).all(), (s0, s1)
    again = ts.normality(da0, tests=ALL_TESTS, seed=1)
    _assert_same(other, again)


def test_subsample_depends_on_group_labels():
    """Two groups holding identical data are subsampled differently."""
    rng = np.random.default_rng(9)
    row = rng.standard_normal(6000)
    da = xr.DataArray(np.stack([row, row]), dims=("channel", "sample"),
                      coords={"channel": ["a", "b"]})
    res = ts.normality(da, tests=("shapiro",))
    assert_array_equal(res["n"].values, [5000, 5000])
    w = res["statistic"].values[0]
    assert w[0] != w[1]


def test_max_samples_parameter():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 70))
    x[1, :10] = np.nan  # 60 finite
    x[2, :20] = np.nan  # 50 finite: exactly max_samples, so no subsampling
    da = xr.DataArray(x, dims=("channel", "sample"))
    res = ts.normality(da, tests=("shapiro", "jarque_bera"), max_samples=50)
    assert_array_equal(res["n"].values, [50, 50, 50])
    assert_array_equal(res["nan_count"].values, [0, 10, 20])
    # group 2 is used whole: exact comparison with scipy
    fin = x[2][np.isfinite(x[2])]
    assert_allclose(res["statistic"].values[0, 2], st.shapiro(fin).statistic, atol=1e-6)
    assert_allclose(res["statistic"].values[1, 2], st.jarque_bera(fin).statistic, rtol=1e-9)
    assert_allclose(res["skew"].values[2], st.skew(fin), rtol=1e-9)
    # the subsampled groups: consistent with their own effect sizes
    jb = 50 / 6 * (res["skew"].values ** 2 + res["kurtosis"].values ** 2 / 4)
    assert_allclose(res["statistic"].values[1], jb, rtol=1e-9)
    assert res["statistic"].values[1, 0] != st.jarque_bera(x[0]).statistic
    # a larger max_samples uses every value: exact again
    whole = ts.normality(da, tests=("shapiro",), max_samples=70)
    check_against_reference(whole, da, ("channel",), ("shapiro",))


def test_groups_at_most_max_samples_are_not_subsampled():
    """4900 finite values out of 5200: all of them are used, results are exact."""
    rng = np.random.default_rng(8)
    x = rng.standard_t(6, (1, 5200))
    x[0, rng.choice(5200, 300, replace=False)] = np.nan
    da0 = xr.DataArray(x, dims=("channel", "sample"))
    for da in (da0, da0.chunk({"sample": 1300})):
        res = ts.normality(da, tests=ALL_TESTS).compute()
        assert_array_equal(res["n"].values, [4900])
        check_against_reference(res, da0, ("channel",), ALL_TESTS)


# --------------------------------------------------------------------------- laziness


def test_dask_input_stays_lazy_until_compute():
    da0 = make_da("normal", 40, True)
    da = da0.chunk({"sample": 9, "channel": 2})
    with raise_if_dask_computes():
        res = ts.normality(da, tests=ALL_TESTS)
        for k in res.data_vars:
            assert is_dask(res[k]), k
        check_structure(res, ("step", "channel"), ALL_TESTS)
    check_against_reference(res.compute(), da0, ("step", "channel"), ALL_TESTS)


def test_numpy_input_gives_numpy_result():
    res = ts.normality(make_da("normal", 20, False))
    for k in res.data_vars:
        assert isinstance(res[k].data, np.ndarray), (k, type(res[k].data))


def test_threads_and_synchronous_agree():
    da0 = make_da("bimodal", 60, True)
    res = ts.normality(da0.chunk({"sample": 13, "channel": 1}), tests=ALL_TESTS)
    _assert_same(res.compute(scheduler="synchronous"), res.compute(scheduler="threads"))

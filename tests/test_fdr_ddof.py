"""ts.fdr against statsmodels' Benjamini-Hochberg; ts.moments(ddof=) against NumPy and NIST."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from statsmodels.stats.multitest import multipletests

import tensorstats as ts


def _bh(p: np.ndarray) -> np.ndarray:
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


@pytest.fixture
def pvalues():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=(3, 5, 40)) ** 3  # many small p-values
    p[0, 1, ::7] = np.nan
    p[2, 4, :] = np.nan  # a family with no tests at all
    return xr.DataArray(p, dims=("test", "step", "channel"),
                        coords={"test": ["a", "b", "c"], "step": [0, 10, 20, 30, 40]})


@pytest.mark.parametrize("chunked", [False, True])
def test_fdr_over_one_dim_matches_statsmodels(pvalues, chunked):
    da = pvalues.chunk({"channel": 7, "step": 2}) if chunked else pvalues
    out = ts.fdr(da, dim="channel")
    assert out.dims == pvalues.dims and out.name == "pvalue_fdr"
    assert out.chunks is not None if chunked else out.chunks is None
    got = out.values
    for i in range(3):
        for j in range(5):
            np.testing.assert_allclose(got[i, j], _bh(pvalues.values[i, j]), rtol=1e-12)
    assert (out["step"] == pvalues["step"]).all()


def test_fdr_over_several_dims_and_all(pvalues):
    both = ts.fdr(pvalues, dim=("step", "channel")).values
    for i in range(3):
        np.testing.assert_allclose(both[i].ravel(), _bh(pvalues.values[i].ravel()), rtol=1e-12)
    everything = ts.fdr(pvalues).values
    np.testing.assert_allclose(everything.ravel(), _bh(pvalues.values.ravel()), rtol=1e-12)


def test_fdr_matches_what_normality_uses_inside():
    rng = np.random.default_rng(2)
    da = xr.DataArray(rng.standard_t(5, size=(4, 6, 300)), dims=("step", "channel", "x"))
    res = ts.normality(da, tests=("shapiro",))
    again = ts.fdr(res["pvalue"], dim=("step", "channel"))
    np.testing.assert_allclose(again.values, res["pvalue_fdr"].values, rtol=1e-12)


def test_fdr_bad_input(pvalues):
    with pytest.raises(TypeError, match="DataArray"):
        ts.fdr(pvalues.values)
    with pytest.raises(ValueError, match=r"dim \['layer'\] not in"):
        ts.fdr(pvalues, dim="layer")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ts.fdr(pvalues + 1.5, dim="channel")
    lazy = ts.fdr((pvalues * -1).chunk({"step": 1}), dim="channel")  # checked when computed
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lazy.compute()
    with pytest.raises(TypeError, match="floating"):
        ts.fdr(xr.DataArray(np.array([0, 1])), dim="dim_0")


# ------------------------------------------------------------------ ddof
@pytest.mark.parametrize("ddof", [0, 1, 2])
@pytest.mark.parametrize("chunked", [False, True])
def test_ddof_matches_numpy(ddof, chunked):
    rng = np.random.default_rng(3)
    x = rng.normal(3, 2, size=(4, 3, 50))
    x[1, 2, :48] = np.nan  # two finite values: NaN var for ddof=2
    da = xr.DataArray(x, dims=("step", "channel", "x"))
    m = ts.moments(da.chunk({"x": 20}) if chunked else da, ddof=ddof).compute()
    for i in range(4):
        for c in range(3):
            v = x[i, c][np.isfinite(x[i, c])]
            want = np.var(v, ddof=ddof) if v.size > ddof else np.nan
            np.testing.assert_allclose(m["var"].values[i, c], want, rtol=1e-12)
            np.testing.assert_allclose(m["std"].values[i, c], np.sqrt(want), rtol=1e-12)
    assert m["var"].attrs["ddof"] == ddof


def test_ddof_nist_numacc1_certified():
    # NIST StRD univariate NumAcc1: 10000001, 10000003, 10000002; certified mean
    # 10000002 and sample standard deviation (ddof=1) 1.0
    da = xr.DataArray(np.array([10000001.0, 10000003.0, 10000002.0]), dims="x")
    m = ts.moments(da, ddof=1)
    assert float(m["mean"]) == 10000002.0
    assert float(m["std"]) == 1.0


def test_ddof_on_stored_moments(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 64, 5))
    with ts.Recorder(tmp_path / "r.zarr") as rec:
        for s in range(2):
            rec.record("feature", "fc", x[s], step=s, channel_axis=1, max_elements=16)
    run = ts.open_run(tmp_path / "r.zarr")
    m = ts.moments(run.moments("feature", "fc"), ddof=1).compute()
    want = np.var(x, axis=1, ddof=1)
    np.testing.assert_allclose(m["var"].values, want, rtol=1e-10)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1"])
def test_ddof_bad(bad):
    with pytest.raises(ValueError, match="ddof"):
        ts.moments(xr.DataArray(np.ones(3), dims="x"), ddof=bad)

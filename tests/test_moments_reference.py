"""Reference tests of ``ts.moments``: every value is checked against numpy / scipy.

The expected values are computed here by brute force, one group at a time, on the
finite values of the group, with ``numpy`` and ``scipy.stats``; nothing is taken
from the implementation under test.
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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal

import tensorstats as ts
from conftest import raise_if_dask_computes

FLOAT_VARS = ("mean", "var", "std", "skew", "kurtosis", "min", "max")
INT_VARS = ("count", "nan_count", "inf_count")
ALL_VARS = INT_VARS + FLOAT_VARS


# --------------------------------------------------------------------------- helpers


make_da = _data.make_da


def reference_one(values: np.ndarray) -> dict:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    c = finite.size
    out = {
        "count": c,
        "nan_count": int(np.isnan(values).sum()),
        "inf_count": int(np.isinf(values).sum()),
    }
    if c == 0:
        out.update({k: np.nan for k in FLOAT_VARS})
        return out
    out["mean"] = np.mean(finite)
    out["var"] = np.var(finite)
    out["std"] = np.std(finite)
    out["min"] = np.min(finite)
    out["max"] = np.max(finite)
    if c < 3 or finite.min() == finite.max():
        out["skew"] = out["kurtosis"] = np.nan
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reference side only
            out["skew"] = st.skew(finite, bias=True)
            out["kurtosis"] = st.kurtosis(finite, fisher=True, bias=True)
    return out


def reference(da: xr.DataArray, kept) -> dict[str, np.ndarray]:
    kept = tuple(kept)
    kshape = tuple(da.sizes[d] for d in kept)
    out = {k: np.empty(kshape, dtype=np.int64) for k in INT_VARS}
    out.update({k: np.empty(kshape, dtype=np.float64) for k in FLOAT_VARS})
    for idx, values in _groups(da, kept):
        for k, v in reference_one(values).items():
            out[k][idx] = v
    return out


def check_against_reference(res: xr.Dataset, da: xr.DataArray, kept, *, scale=1.0):
    """Compare every variable of ``res`` with the brute-force reference."""
    kept = tuple(kept)
    exp = reference(da, kept)
    for k in ALL_VARS:
        assert k in res.data_vars, f"missing variable {k!r}"
        assert res[k].dims == kept, (k, res[k].dims, kept)
    got = {k: np.asarray(res[k].values) for k in ALL_VARS}
    for k in INT_VARS:
        assert got[k].dtype == np.int64, (k, got[k].dtype)
        assert_array_equal(got[k], exp[k], err_msg=k)
    for k in FLOAT_VARS:
        assert got[k].dtype == np.float64, (k, got[k].dtype)
    assert_array_equal(got["min"], exp["min"], err_msg="min")
    assert_array_equal(got["max"], exp["max"], err_msg="max")
    assert_allclose(got["mean"], exp["mean"], rtol=1e-12, atol=1e-12 * scale, err_msg="mean")
    assert_allclose(got["var"], exp["var"], rtol=1e-10, atol=1e-14 * scale**2, err_msg="var")
    assert_allclose(got["std"], exp["std"], rtol=1e-10, atol=1e-14 * scale, err_msg="std")
    assert_allclose(got["skew"], exp["skew"], rtol=1e-9, atol=1e-10, err_msg="skew")
    assert_allclose(got["kurtosis"], exp["kurtosis"], rtol=1e-9, atol=1e-10, err_msg="kurtosis")


# --------------------------------------------------------------------------- main grid


@reference_grid
def test_moments_match_scipy(dist, n, nonfinite, backend):
    da0 = make_da(dist, n, nonfinite)
    da = _chunk(da0, backend)
    res = ts.moments(da)
    assert isinstance(res, xr.Dataset)
    for k in ALL_VARS:
        assert is_dask(res[k]) == (backend != "numpy"), k
    res = res.compute()
    check_against_reference(res, da0, ("step", "channel"))
    assert_array_equal(res["step"].values, da0["step"].values)
    assert_array_equal(res["channel"].values, da0["channel"].values)


@pytest.mark.parametrize("backend", ["numpy", "dask-pooled"])
def test_float32_input_gives_float64_results(backend):
    da0 = make_da("normal", 50, True, dtype=np.float32)
    res = ts.moments(_chunk(da0, backend)).compute()
    check_against_reference(res, da0.astype(np.float64), ("step", "channel"))


def test_several_pooled_dims_interleaved_with_kept_dims():
    rng = np.random.default_rng(3)
    x = rng.standard_t(4, (4, 2, 5, 3, 6))
    x[0, 1, 2, 0, 3] = np.nan
    x[3, 0, 0, 2, 5] = np.inf
    da0 = xr.DataArray(
        x, dims=("a", "step", "b", "channel", "c"),
        coords={"step": [1, 5], "channel": ["x", "y", "z"], "a": np.arange(4)},
    )
    for da in (da0, da0.chunk({"a": 3, "b": 2, "c": 4, "channel": 2})):
        res = ts.moments(da).compute()
        check_against_reference(res, da0, ("step", "channel"))
        assert "a" not in res.dims and "b" not in res.dims and "c" not in res.dims


# --------------------------------------------------------------------------- by / dims


def _by_da():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 7, 4, 5))
    x[1, 2, 3, 0, :] = np.nan
    return xr.DataArray(
        x, dims=("run", "step", "x", "channel", "y"),
        coords={
            "run": ["r0", "r1"],
            "step": [0, 10, 20],
            "x": np.linspace(0, 1, 7),
            "channel": [3, 1, 4, 1 + 4],
        },
    )


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize(
    "by",
    [None, "channel", "x", ("step",), ("run", "channel"), ("channel", "run"), ("x", "y"),
     ["step", "y"], ()],
    ids=repr,
)
def test_by_variants(by, chunked):
    da0 = _by_da()
    da = da0.chunk({"x": 3, "y": 2, "step": 2}) if chunked else da0
    res = ts.moments(da) if by is None else ts.moments(da, by=by)
    kept = _kept_in_input_order(da0, by)
    res = res.compute()
    for k in ALL_VARS:
        assert res[k].dims == kept, (k, res[k].dims, kept)
    check_against_reference(res, da0, kept)
    for d in kept:
        if d in da0.coords:
            assert_array_equal(res[d].values, da0[d].values)
    for d in set(da0.dims) - set(kept):
        assert d not in res.dims


def test_default_by_keeps_only_present_dims():
    rng = np.random.default_rng(5)
    da = xr.DataArray(rng.standard_normal((3, 40)), dims=("channel", "dim_1"),
                      coords={"channel": ["a", "b", "c"]})
    res = ts.moments(da)
    assert res["mean"].dims == ("channel",)
    check_against_reference(res, da, ("channel",))


def test_default_by_without_any_default_dim_pools_everything():
    rng = np.random.default_rng(6)
    da = xr.DataArray(rng.uniform(size=(6, 9)), dims=("dim_0", "dim_1"))
    res = ts.moments(da)
    for k in ALL_VARS:
        assert res[k].dims == ()
    check_against_reference(res, da, ())


def test_by_empty_pools_everything_into_0d():
    da0 = make_da("bimodal", 30, True)
    for da in (da0, da0.chunk({"sample": 7, "channel": 2})):
        res = ts.moments(da, by=()).compute()
        for k in ALL_VARS:
            assert res[k].dims == () and res[k].shape == ()
        check_against_reference(res, da0, ())
        allv = da0.values.ravel()
        fin = allv[np.isfinite(allv)]
        assert int(res["count"]) == fin.size
        assert_allclose(float(res["var"]), np.var(fin), rtol=1e-10)


def test_dims_order_follows_input_not_by():
    da = _by_da()
    res = ts.moments(da, by=("channel", "step"))
    assert res["mean"].dims == ("step", "channel")
    res2 = ts.moments(da.transpose("channel", "y", "x", "step", "run"), by=("step", "channel"))
    assert res2["mean"].dims == ("channel", "step")
    assert_allclose(res2["mean"].transpose("step", "channel").values, res["mean"].values,
                    rtol=1e-12)


@pytest.mark.parametrize("by", ["nope", ("step", "nope"), ["nope"]], ids=repr)
@pytest.mark.parametrize("chunked", [False, True])
def test_by_unknown_dim_raises_naming_it(by, chunked):
    da = make_da("normal", 10, False)
    if chunked:
        da = da.chunk({"sample": 3})
    with pytest.raises((ValueError, KeyError), match="nope"):
        ts.moments(da, by=by)


# --------------------------------------------------------------------------- stability


@pytest.mark.parametrize("offset", [1e7, -1e7])
def test_large_offset_is_numerically_stable(offset):
    rng = np.random.default_rng(2024)
    x = offset + 0.1 * rng.standard_normal((2, 5000))
    da0 = xr.DataArray(x, dims=("channel", "sample"))
    for da in (da0, da0.chunk({"sample": 1000}), da0.chunk({"sample": 777, "channel": 1})):
        res = ts.moments(da).compute()
        for c in range(2):
            d = x[c] - offset  # exact: x[c] and offset are within a factor of 2
            assert_allclose(res["var"].values[c], np.var(d), rtol=1e-9)
            assert_allclose(res["std"].values[c], np.std(d), rtol=1e-9)
            assert_allclose(res["mean"].values[c] - offset, np.mean(d), rtol=0, atol=1e-8)
            assert_allclose(res["skew"].values[c], st.skew(d), rtol=0, atol=1e-6)
            assert_allclose(res["kurtosis"].values[c], st.kurtosis(d), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- degenerate


def _degenerate_da():
    n = 10
    rows = {
        "constant": np.full(n, 0.1),
        "constant_big": np.full(n, 1e7 + 0.1),
        "all_nan": np.full(n, np.nan),
        "all_inf": np.array([np.inf, -np.inf] * (n // 2)),
        "single": np.array([np.nan] * (n - 1) + [2.5]),
        "two": np.array([1.0, np.nan, 4.0] + [np.inf] * (n - 3)),
        "three": np.array([1.0, 2.0, 4.0] + [np.nan] * (n - 3)),
        "const_with_nan": np.array([3.0] * (n - 2) + [np.nan, -np.inf]),
    }
    x = np.stack(list(rows.values()))
    return xr.DataArray(x, dims=("channel", "sample"), coords={"channel": list(rows)})


@pytest.mark.parametrize("backend", ["numpy", "dask-pooled", "dask-kept"])
def test_degenerate_groups_give_nans_without_warnings(backend):
    da0 = _degenerate_da()
    da = _chunk(da0, backend)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ts.moments(da).compute(scheduler="synchronous")
    r = {k: res[k].to_series() for k in ALL_VARS}

    assert list(r["count"]) == [10, 10, 0, 0, 1, 2, 3, 8]
    assert list(r["nan_count"]) == [0, 0, 10, 0, 9, 1, 7, 1]
    assert list(r["inf_count"]) == [0, 0, 0, 10, 0, 7, 0, 1]
    for name in ("all_nan", "all_inf"):
        for k in FLOAT_VARS:
            assert np.isnan(r[k][name]), (name, k, r[k][name])
    for name in ("constant", "constant_big", "single", "two", "const_with_nan"):
        assert np.isnan(r["skew"][name]), (name, r["skew"][name])
        assert np.isnan(r["kurtosis"][name]), (name, r["kurtosis"][name])
    # Constant groups: the spread is zero (to rounding at most), mean/min/max the value.
    assert_allclose(r["var"]["constant"], 0.0, atol=1e-30)
    assert_allclose(r["var"]["const_with_nan"], 0.0, atol=1e-30)
    assert_allclose(r["var"]["constant_big"], 0.0, atol=1e-16)
    assert_allclose(r["mean"]["constant"], 0.1, rtol=1e-15)
    assert r["min"]["constant"] == r["max"]["constant"] == 0.1
    assert r["min"]["const_with_nan"] == r["max"]["const_with_nan"] == 3.0
    assert r["mean"]["single"] == 2.5 and r["var"]["single"] == 0.0 and r["std"]["single"] == 0
    assert r["min"]["single"] == r["max"]["single"] == 2.5
    assert_allclose(r["mean"]["two"], 2.5)
    assert_allclose(r["var"]["two"], 2.25)
    assert_allclose(r["std"]["two"], 1.5)
    assert r["min"]["two"] == 1.0 and r["max"]["two"] == 4.0
    three = np.array([1.0, 2.0, 4.0])
    assert_allclose(r["skew"]["three"], st.skew(three), rtol=1e-12)
    assert_allclose(r["kurtosis"]["three"], st.kurtosis(three), rtol=1e-12)
    check_against_reference(res, da0, ("channel",), scale=1e7)


def test_empty_pooled_dim_gives_zero_count_and_nans():
    da = xr.DataArray(np.empty((2, 0)), dims=("channel", "sample"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ts.moments(da).compute(scheduler="synchronous")
    assert_array_equal(res["count"].values, [0, 0])
    for k in FLOAT_VARS:
        assert np.isnan(res[k].values).all(), k


# --------------------------------------------------------------------------- laziness


def test_dask_input_stays_lazy_until_compute():
    da0 = make_da("normal", 60, True)
    da = da0.chunk({"sample": 17, "channel": 2})
    with raise_if_dask_computes():
        res = ts.moments(da)
        for k in ALL_VARS:
            assert is_dask(res[k]), k
            assert res[k].dims == ("step", "channel")
        _ = res["mean"].dtype, res["count"].shape, res.coords["channel"].values
    check_against_reference(res.compute(), da0, ("step", "channel"))


def test_raise_if_dask_computes_actually_raises():
    """The helper above must be able to fail: a compute inside it raises."""
    da = xr.DataArray(np.arange(6.0)).chunk(2)
    with raise_if_dask_computes(), pytest.raises(RuntimeError, match="lazy"):
        da.sum().compute()


def test_numpy_input_gives_numpy_result():
    res = ts.moments(make_da("uniform", 20, False))
    for k in ALL_VARS:
        assert isinstance(res[k].data, np.ndarray), (k, type(res[k].data))


def test_same_result_on_every_scheduler():
    da0 = make_da("heavy", 12, True, nstep=2, nchan=2)
    da = da0.chunk({"sample": 5, "channel": 1})
    res = ts.moments(da)
    results = {s: res.compute(scheduler=s) for s in ("synchronous", "threads", "processes")}
    ref = results["synchronous"]
    check_against_reference(ref, da0, ("step", "channel"))
    for s, r in results.items():
        for k in ALL_VARS:
            assert_allclose(r[k].values, ref[k].values, rtol=1e-14, atol=0, err_msg=(s, k))


# --------------------------------------------------------------------------- hypothesis

# Multiples of 1/8: exactly representable, so shifted data stay exact as well.
_eighths = hst.integers(-8000, 8000).map(lambda k: k / 8.0)
_values = hst.one_of(_eighths, _eighths, _eighths, _eighths, _eighths, _eighths,
                     hst.sampled_from([np.nan, np.inf, -np.inf]))


@hst.composite
def _chunking(draw, n):
    """Random chunk sizes summing to n."""
    if n <= 1:
        return (n,)
    cuts = draw(hst.sets(hst.integers(1, n - 1), max_size=min(n - 1, 6)))
    edges = [0, *sorted(cuts), n]
    return tuple(int(v) for v in np.diff(edges))


@hst.composite
def _arrays_and_chunks(draw, finite_only=False):
    nchan = draw(hst.integers(1, 3))
    n = draw(hst.integers(1, 30))
    elems = _eighths if finite_only else _values
    x = draw(hnp.arrays(np.float64, (nchan, n), elements=elems))
    return x, (draw(_chunking(nchan)), draw(_chunking(n)))


_hyp = settings(max_examples=30, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _close(a, b, scale, what):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert_allclose(a, b, rtol=1e-9, atol=1e-9 * scale, err_msg=what)


@_hyp
@given(_arrays_and_chunks())
def test_hyp_chunked_equals_unchunked(data):
    x, chunks = data
    da0 = xr.DataArray(x, dims=("channel", "sample"))
    plain = ts.moments(da0)
    chunked = ts.moments(da0.chunk({"channel": chunks[0], "sample": chunks[1]}))
    assert all(is_dask(chunked[k]) for k in ALL_VARS)
    chunked = chunked.compute(scheduler="synchronous")
    for k in INT_VARS:
        assert_array_equal(chunked[k].values, plain[k].values, err_msg=k)
    scale = 1000.0
    for k in ("mean", "std", "min", "max"):
        _close(chunked[k], plain[k], scale, k)
    _close(chunked["var"], plain["var"], scale**2, "var")
    for k in ("skew", "kurtosis"):
        assert_allclose(chunked[k].values, plain[k].values, rtol=1e-7, atol=1e-7, err_msg=k)
    # and both agree with the brute-force reference
    check_against_reference(plain, da0, ("channel",), scale=scale)


@_hyp
@given(hst.floats(-1e8, 1e8, allow_nan=False), hst.integers(3, 40), hst.data())
def test_hyp_constant_group_any_chunking(c, n, data):
    """A constant group has zero spread and NaN skew/kurtosis however it is chunked."""
    chunks = data.draw(_chunking(n))
    x = np.full((1, n), c)
    da = xr.DataArray(x, dims=("channel", "sample")).chunk({"sample": chunks})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ts.moments(da).compute(scheduler="synchronous").isel(channel=0)
    assert int(res["count"]) == n
    assert float(res["min"]) == float(res["max"]) == c
    assert_allclose(float(res["mean"]), c, rtol=1e-15, atol=0)
    assert_allclose(float(res["std"]), 0.0, atol=1e-15 * abs(c) * np.sqrt(n))
    assert np.isnan(float(res["skew"])), float(res["skew"])
    assert np.isnan(float(res["kurtosis"])), float(res["kurtosis"])


@_hyp
@given(_arrays_and_chunks(), hst.integers(-80000, 80000).map(lambda k: k / 8.0))
def test_hyp_shift_moves_mean_only(data, c):
    x, _ = data
    da0 = xr.DataArray(x, dims=("channel", "sample"))
    a = ts.moments(da0)
    b = ts.moments(da0 + c)  # exact: multiples of 1/8 well inside float64's range
    for k in INT_VARS:
        assert_array_equal(a[k].values, b[k].values, err_msg=k)
    scale = 1000.0 + abs(c)
    assert_allclose(b["mean"].values, a["mean"].values + c, rtol=0, atol=1e-12 * scale)
    assert_allclose(b["min"].values, a["min"].values + c, rtol=0, atol=0)
    assert_allclose(b["max"].values, a["max"].values + c, rtol=0, atol=0)
    var_a = a["var"].values
    assert_allclose(b["var"].values, var_a, rtol=1e-8, atol=1e-24 * scale**2, err_msg="var")
    assert_allclose(b["std"].values, a["std"].values, rtol=1e-8, atol=1e-12 * scale)
    for k in ("skew", "kurtosis"):
        assert_allclose(b[k].values, a[k].values, rtol=1e-7, atol=1e-7, err_msg=k)


@_hyp
@given(_arrays_and_chunks(), hst.floats(0.01, 100.0))
def test_hyp_scale_scales_std(data, s):
    x, _ = data
    da0 = xr.DataArray(x, dims=("channel", "sample"))
    a = ts.moments(da0)
    b = ts.moments(da0 * s)
    for k in INT_VARS:
        assert_array_equal(a[k].values, b[k].values, err_msg=k)
    scale = 1000.0 * s
    assert_allclose(b["std"].values, s * a["std"].values, rtol=1e-9, atol=1e-12 * scale)
    assert_allclose(b["var"].values, s * s * a["var"].values, rtol=1e-9,
                    atol=1e-24 * scale**2)
    assert_allclose(b["mean"].values, s * a["mean"].values, rtol=1e-12, atol=1e-12 * scale)
    for k in ("skew", "kurtosis"):
        assert_allclose(b[k].values, a[k].values, rtol=1e-7, atol=1e-7, err_msg=k)

"""Reference tests of ``ts.shift`` against scipy.

Every expected value is computed here, one group at a time, with scipy / numpy on
the finite values of the group (the JS / Hellinger bins follow the documented
construction, written out below with numpy); nothing is taken from the
implementation under test.  Subsampled groups cannot be reproduced here, so for
them only properties (sizes, reproducibility, chunking independence) are checked.
"""

from __future__ import annotations

import math
import warnings
import zlib

import dask
import dask.array
import numpy as np
import pytest
import scipy.stats as st
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as hst
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.spatial.distance import jensenshannon

import tensorstats as ts
from conftest import raise_if_dask_computes

ALL_METRICS = ("wasserstein", "ks", "energy", "js", "hellinger")
DEFAULT_METRICS = ("wasserstein", "ks", "energy", "js")
RTOL = 1e-9
ATOL = 1e-12
P_ATOL = 1e-6


# --------------------------------------------------------------------------- helpers


def _seed(*parts) -> int:
    return zlib.crc32(repr(parts).encode())


def _bins(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin proportions of a and b on the shared equal-mass bins of the contract."""
    pooled = np.sort(np.concatenate([a, b]))
    big_n = pooled.size
    nbins = int(np.clip(math.ceil(math.sqrt(min(a.size, b.size))), 2, 128))
    idx = np.array([(j * big_n) // nbins - 1 for j in range(1, nbins)], dtype=np.int64)
    # plus each sample's maximum, and the largest pooled value below each sample's minimum
    extra = [a.max(), b.max(), *(pooled[pooled < s.min()][-1:] for s in (a, b))]
    edges = np.sort(np.concatenate([pooled[idx], np.hstack(extra)]))

    def props(s):
        s = np.sort(s)
        cum = np.concatenate([[0], np.searchsorted(s, edges, side="right"), [s.size]])
        return np.diff(cum) / s.size

    return props(a), props(b)


def reference_metrics(sample, reference, metrics=ALL_METRICS, ks_method="auto") -> dict:
    """Expected shift of one group, from scipy on the finite values."""
    a = np.asarray(sample, dtype=np.float64).ravel()
    b = np.asarray(reference, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    out = {"n": a.size, "n_reference": b.size}
    names = []
    for m in metrics:
        names.append(m)
        if m == "ks":
            names.append("ks_pvalue")
    if a.size == 0 or b.size == 0:
        out.update({m: np.nan for m in names})
        return out
    for m in metrics:
        if m == "wasserstein":
            out[m] = st.wasserstein_distance(a, b)
        elif m == "energy":
            out[m] = st.energy_distance(a, b)
        elif m == "ks":
            out[m] = st.ks_2samp(a, b).statistic
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exact -> asymp fallback warns
                out["ks_pvalue"] = st.ks_2samp(a, b, method=ks_method).pvalue
        elif m == "js":
            p, q = _bins(a, b)
            out[m] = jensenshannon(p, q, base=2) ** 2
        elif m == "hellinger":
            p, q = _bins(a, b)
            out[m] = math.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q)))))
        else:
            raise AssertionError(m)
    return out


def assert_metric_close(name, got, want, err=""):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if name == "ks_pvalue":
        assert_allclose(got, want, rtol=0, atol=P_ATOL, equal_nan=True, err_msg=err)
    elif name == "hellinger":
        # the sqrt amplifies rounding of 1 - sum(sqrt(p q)) near 0: compare h^2 there
        assert_allclose(got ** 2, want ** 2, rtol=RTOL, atol=ATOL, equal_nan=True,
                        err_msg=err)
        if np.all(np.isfinite(want)) and np.all(want > 1e-4):
            assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=err)
    else:
        assert_allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True, err_msg=err)


def output_names(metrics) -> list[str]:
    names = []
    for m in metrics:
        names.append(m)
        if m == "ks":
            names.append("ks_pvalue")
    return [*names, "n", "n_reference"]


def _inject_nonfinite(x: np.ndarray, rng, frac=0.1) -> np.ndarray:
    x = x.copy()
    mask = rng.random(x.shape) < frac
    x[mask] = rng.choice(np.array([np.nan, np.inf, -np.inf]), size=int(mask.sum()))
    return x


def make_da(*, nstep=4, nchan=3, shape=(6, 7), seed=0, nonfinite=True, ties=False):
    """(step, channel, a, b) with a different distribution at each step."""
    rng = np.random.default_rng(_seed("shift", nstep, nchan, shape, seed, nonfinite, ties))
    loc = np.arange(nstep)[:, None, None, None] * 0.4
    scale = 1.0 + 0.3 * np.arange(nchan)[None, :, None, None]
    x = loc + scale * rng.standard_normal((nstep, nchan, *shape))
    if ties:
        x = np.round(x * 2) / 2
    if nonfinite:
        x = _inject_nonfinite(x, rng)
    return xr.DataArray(
        x, dims=("step", "channel", "a", "b"),
        coords={"step": [0, 10, 25, 40][:nstep] if nstep <= 4 else np.arange(nstep) * 7,
                "channel": [f"c{i}" for i in range(nchan)],
                "a": np.arange(shape[0])},
    )


def _groups(da: xr.DataArray, kept):
    kept = tuple(kept)
    pooled = [d for d in da.dims if d not in kept]
    return da.transpose(*kept, *pooled)


def expected_dataset(pairs, kept_shape, metrics, ks_method="auto") -> dict:
    """pairs: dict idx -> (sample, reference); returns name -> array over kept_shape."""
    names = output_names(metrics)
    out = {n: np.full(kept_shape, np.nan) for n in names}
    for idx, (a, b) in pairs.items():
        ref = reference_metrics(a, b, metrics, ks_method)
        for n in names:
            out[n][idx] = ref[n]
    return out


def check_result(res: xr.Dataset, expected: dict, metrics, kept_dims, err=""):
    assert list(res.data_vars) == output_names(metrics)
    for name, want in expected.items():
        got = res[name]
        assert got.dims == tuple(kept_dims), (name, got.dims)
        if name in ("n", "n_reference"):
            assert got.dtype == np.int64, (name, got.dtype)
            assert_array_equal(got.values, want.astype(np.int64), err_msg=f"{name} {err}")
        else:
            assert_metric_close(name, got.values, want, err=f"{name} {err}")


def expected_stepwise(da: xr.DataArray, ref_step_index, metrics, ks_method="auto"):
    """Expected result for step-based reference modes with kept (step, channel)."""
    g = _groups(da, ("step", "channel")).values
    nstep, nchan = g.shape[:2]
    pairs = {}
    for s in range(nstep):
        rs = ref_step_index(s)
        for c in range(nchan):
            ref = g[rs, c] if rs is not None else np.array([np.nan])
            pairs[(s, c)] = (g[s, c], ref)
    return expected_dataset(pairs, (nstep, nchan), metrics, ks_method)


STEP_MODES = {
    "initial": lambda s: 0,
    "previous": lambda s: s - 1 if s > 0 else None,
    25: lambda s: 2,  # step label 25 is the third step
}


def _chunked(da: xr.DataArray, backend: str) -> xr.DataArray:
    if backend == "numpy":
        return da
    if backend == "dask-step":
        return da.chunk({"step": 1})
    if backend == "dask-pooled":
        return da.chunk({"a": 2, "b": 3})
    if backend == "dask-both":
        return da.chunk({"step": 3, "channel": 2, "a": 4})
    raise AssertionError(backend)


BACKENDS = ("numpy", "dask-step", "dask-pooled", "dask-both")


# --------------------------------------------------------------------------- agreement with scipy


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", list(STEP_MODES), ids=str)
def test_step_modes_match_scipy(mode, backend):
    da = make_da()
    metrics = ALL_METRICS
    res = ts.shift(_chunked(da, backend), reference=mode, metrics=metrics)
    if backend != "numpy":
        assert res["wasserstein"].chunks is not None, "dask in should give dask out"
        res = res.compute()
    else:
        assert res["wasserstein"].chunks is None, "numpy in should give numpy out"
        assert isinstance(res["wasserstein"].data, np.ndarray)
    assert_array_equal(res["step"].values, da["step"].values)
    assert_array_equal(res["channel"].values, da["channel"].values)
    expected = expected_stepwise(da, STEP_MODES[mode], metrics)
    check_result(res, expected, metrics, ("step", "channel"), err=f"{mode} {backend}")


def test_previous_first_step_is_nan():
    da = make_da(nonfinite=False)
    res = ts.shift(da, reference="previous", metrics=ALL_METRICS)
    first = res.isel(step=0)
    for name in output_names(ALL_METRICS)[:-2]:
        assert np.all(np.isnan(first[name].values)), name
    assert_array_equal(first["n_reference"].values, 0)
    # the other steps are real numbers
    assert np.all(np.isfinite(res["wasserstein"].isel(step=slice(1, None)).values))


def test_default_metrics_and_order():
    da = make_da(nstep=2, nonfinite=False)
    res = ts.shift(da)
    assert list(res.data_vars) == output_names(DEFAULT_METRICS)
    res = ts.shift(da, metrics=("hellinger", "energy", "ks"))
    assert list(res.data_vars) == ["hellinger", "energy", "ks", "ks_pvalue", "n", "n_reference"]
    expected = expected_stepwise(da, STEP_MODES["initial"], ("hellinger", "energy", "ks"))
    check_result(res, expected, ("hellinger", "energy", "ks"), ("step", "channel"))


def test_ties_match_scipy():
    """Heavily tied values (KS ties, bins with equal edges)."""
    da = make_da(ties=True, shape=(5, 9))
    res = ts.shift(da, reference="initial", metrics=ALL_METRICS)
    expected = expected_stepwise(da, STEP_MODES["initial"], ALL_METRICS)
    check_result(res, expected, ALL_METRICS, ("step", "channel"))


@pytest.mark.parametrize("ks_method", ["auto", "exact", "asymp"])
def test_ks_method_matches_scipy(ks_method):
    da = make_da(shape=(8, 8), seed=3)
    res = ts.shift(da, reference="initial", metrics=("ks",), ks_method=ks_method)
    expected = expected_stepwise(da, STEP_MODES["initial"], ("ks",), ks_method)
    check_result(res, expected, ("ks",), ("step", "channel"), err=ks_method)


def test_ks_methods_differ():
    """The ks_method argument really reaches the p-value (exact != asymp here)."""
    rng = np.random.default_rng(5)
    a = rng.normal(size=30)
    b = rng.normal(size=25) + 0.6
    pe = st.ks_2samp(a, b, method="exact").pvalue
    pa = st.ks_2samp(a, b, method="asymp").pvalue
    assert abs(pe - pa) > 10 * P_ATOL
    da = xr.DataArray(a, dims="x")
    ref = xr.DataArray(b, dims="y")
    got_e = float(ts.shift(da, reference=ref, metrics=("ks",), ks_method="exact")["ks_pvalue"])
    got_a = float(ts.shift(da, reference=ref, metrics=("ks",), ks_method="asymp")["ks_pvalue"])
    assert_allclose(got_e, pe, atol=P_ATOL, rtol=0)
    assert_allclose(got_a, pa, atol=P_ATOL, rtol=0)


@pytest.mark.parametrize("ks_method", ["auto", "exact"])
@pytest.mark.parametrize("n", [1, 2, 7, 50, 400, 3000])
def test_ks_equal_sizes_match_scipy(n, ks_method):
    """Equal sizes (scipy's n == m exact path), statistics from tiny to large p."""
    rng = np.random.default_rng(_seed("ks-equal", n))
    shifts = np.array([0.0, 0.05, 0.2, 0.5, 1.5])
    a = rng.normal(size=(shifts.size, n))
    b = rng.normal(size=(shifts.size, n)) + shifts[:, None]
    res = ts.shift(xr.DataArray(a, dims=("channel", "x")),
                   reference=xr.DataArray(b, dims=("channel", "y")), metrics=("ks",),
                   ks_method=ks_method, max_samples=None)
    pairs = {(i,): (a[i], b[i]) for i in range(shifts.size)}
    check_result(res, expected_dataset(pairs, (shifts.size,), ("ks",), ks_method), ("ks",),
                 ("channel",), err=f"n={n} {ks_method}")


@pytest.mark.parametrize("n", [10000, 10001])
def test_ks_auto_switches_to_asymp_like_scipy(n):
    rng = np.random.default_rng(_seed("ks-auto", n))
    a = rng.normal(size=n)
    b = rng.normal(size=37) + 0.3
    res = ts.shift(xr.DataArray(a, dims="x"), reference=xr.DataArray(b, dims="y"),
                   metrics=("ks",), max_samples=None)
    want = st.ks_2samp(a, b)
    assert_allclose(float(res["ks"]), want.statistic, rtol=RTOL, atol=ATOL)
    assert_allclose(float(res["ks_pvalue"]), want.pvalue, rtol=0, atol=P_ATOL)


def test_ks_exact_fallback_matches_scipy():
    """Sizes whose lcm is too large for scipy's exact method: scipy warns and uses asymp."""
    rng = np.random.default_rng(11)
    n1, n2 = 46341, 46343
    a = rng.normal(size=n1)
    b = rng.normal(size=n2) + 0.01
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        want = st.ks_2samp(a, b, method="exact")
    assert any("Exact" in str(x.message) for x in w), "scipy no longer falls back here"
    da = xr.DataArray(a, dims="x")
    ref = xr.DataArray(b, dims="y")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ts.shift(da, reference=ref, metrics=("ks",), ks_method="exact", max_samples=None)
    assert_allclose(float(res["ks"]), want.statistic, rtol=RTOL, atol=ATOL)
    assert_allclose(float(res["ks_pvalue"]), want.pvalue, rtol=0, atol=P_ATOL)
    assert int(res["n"]) == n1 and int(res["n_reference"]) == n2


# --------------------------------------------------------------------------- DataArray reference


@pytest.mark.parametrize("backend", BACKENDS)
def test_dataarray_reference_aligned_inner_join(backend):
    """Reference with kept dims in another order, a subset / superset of labels, and
    its own pooled dims of a different size."""
    da = make_da()
    rng = np.random.default_rng(7)
    # steps 10, 25, 99 (99 not in da), channels c2, c0, cX (cX not in da)
    rv = 0.5 + 1.5 * rng.standard_normal((3, 3, 23))
    rv = _inject_nonfinite(rv, rng)
    ref = xr.DataArray(rv, dims=("channel", "step", "k"),
                       coords={"channel": ["c2", "c0", "cX"], "step": [10, 25, 99]})
    ref_in = ref.chunk({"k": 5, "step": 1}) if backend != "numpy" else ref
    res = ts.shift(_chunked(da, backend), reference=ref_in, metrics=ALL_METRICS)
    if backend != "numpy":
        assert res["js"].chunks is not None
        res = res.compute()
    assert res["step"].values.tolist() == [10, 25]
    assert sorted(res["channel"].values.tolist()) == ["c0", "c2"]
    chans = res["channel"].values.tolist()
    pairs = {}
    for i, s in enumerate([10, 25]):
        for j, c in enumerate(chans):
            pairs[(i, j)] = (da.sel(step=s, channel=c).values, ref.sel(step=s, channel=c).values)
    expected = expected_dataset(pairs, (2, len(chans)), ALL_METRICS)
    check_result(res, expected, ALL_METRICS, ("step", "channel"), err=backend)


@pytest.mark.parametrize("lazy", [False, True])
def test_dataarray_reference_broadcast(lazy):
    """A reference lacking the kept dims is broadcast (same sample for every group)."""
    da = make_da(nstep=3, nchan=2)
    rng = np.random.default_rng(8)
    ref = xr.DataArray(rng.standard_normal((4, 11)) * 2.0, dims=("u", "v"))
    ref.values[0, 0] = np.nan
    res = ts.shift(da.chunk({"step": 1}) if lazy else da, reference=ref, metrics=ALL_METRICS)
    res = res.compute()
    g = _groups(da, ("step", "channel")).values
    pairs = {(s, c): (g[s, c], ref.values) for s in range(3) for c in range(2)}
    expected = expected_dataset(pairs, (3, 2), ALL_METRICS)
    check_result(res, expected, ALL_METRICS, ("step", "channel"))
    assert_array_equal(res["n_reference"].values, 43)


def test_dataarray_reference_partial_kept_dims():
    """Reference has channel but no step: each step of a channel vs that channel's ref."""
    da = make_da(nstep=3, nchan=3)
    rng = np.random.default_rng(9)
    ref = xr.DataArray(rng.standard_normal((3, 17)) + np.arange(3)[:, None],
                       dims=("channel", "k"), coords={"channel": ["c0", "c1", "c2"]})
    res = ts.shift(da, reference=ref, metrics=ALL_METRICS)
    g = _groups(da, ("step", "channel")).values
    pairs = {(s, c): (g[s, c], ref.values[c]) for s in range(3) for c in range(3)}
    check_result(res, expected_dataset(pairs, (3, 3), ALL_METRICS), ALL_METRICS,
                 ("step", "channel"))


def test_by_pools_other_dims():
    da = make_da(nstep=3, nchan=3)
    res = ts.shift(da, reference="initial", by="step", metrics=ALL_METRICS)
    g = _groups(da, ("step",)).values.reshape(3, -1)
    pairs = {(s,): (g[s], g[0]) for s in range(3)}
    check_result(res, expected_dataset(pairs, (3,), ALL_METRICS), ALL_METRICS, ("step",))


def test_by_empty_with_dataarray_reference():
    da = make_da(nstep=2, nchan=2)
    ref = xr.DataArray(np.random.default_rng(2).standard_normal(57), dims="k")
    res = ts.shift(da, reference=ref, by=(), metrics=ALL_METRICS)
    want = reference_metrics(da.values, ref.values)
    for name in output_names(ALL_METRICS):
        assert res[name].dims == ()
        if name.startswith("n"):
            assert int(res[name]) == want[name]
        else:
            assert_metric_close(name, float(res[name]), want[name], err=name)


# --------------------------------------------------------------------------- runs


@pytest.mark.parametrize("lazy", [False, True])
def test_runs_initial_uses_each_runs_own_first_step(lazy):
    base = make_da(nstep=3, nchan=2, nonfinite=True)
    runs = xr.concat([base, base * 2.0 + 5.0], dim="run").assign_coords(run=["r0", "r1"])
    assert runs.dims[0] == "run"
    res = ts.shift(runs.chunk({"run": 1, "step": 1}) if lazy else runs, reference="initial",
                   metrics=ALL_METRICS).compute()
    assert res["wasserstein"].dims == ("run", "step", "channel")
    g = _groups(runs, ("run", "step", "channel")).values
    pairs = {(r, s, c): (g[r, s, c], g[r, 0, c])
             for r in range(2) for s in range(3) for c in range(2)}
    check_result(res, expected_dataset(pairs, (2, 3, 2), ALL_METRICS), ALL_METRICS,
                 ("run", "step", "channel"))
    # the first step of each run is compared with itself
    assert_allclose(res["wasserstein"].isel(step=0).values, 0, atol=ATOL)


# --------------------------------------------------------------------------- errors / empty


def test_step_modes_need_step_kept():
    da = make_da(nstep=2)
    for mode in ("initial", "previous", 10):
        with pytest.raises(ValueError):
            ts.shift(da, reference=mode, by="channel")
    no_step = da.isel(step=0, drop=True)
    with pytest.raises(ValueError):
        ts.shift(no_step, reference="initial")


def test_missing_step_label_raises():
    da = make_da(nstep=3)
    with pytest.raises(ValueError):
        ts.shift(da, reference=11)
    with pytest.raises(ValueError):
        ts.shift(da.chunk({"step": 1}), reference=999)


def test_empty_groups_give_nan_without_warnings():
    da = make_da(nstep=3, nchan=3, nonfinite=False)
    v = da.values.copy()
    v[0, 1] = np.nan          # channel c1 at the initial step: empty reference
    v[2, 2] = np.inf          # channel c2 at step 25: empty sample
    v[1, 0, :, :] = -np.inf   # channel c0 at step 10: empty sample
    da = da.copy(data=v)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ts.shift(da, reference="initial", metrics=ALL_METRICS)
        res_lazy = ts.shift(da.chunk({"step": 1}), reference="initial",
                            metrics=ALL_METRICS).compute()
    g = _groups(da, ("step", "channel")).values
    pairs = {(s, c): (g[s, c], g[0, c]) for s in range(3) for c in range(3)}
    expected = expected_dataset(pairs, (3, 3), ALL_METRICS)
    for r in (res, res_lazy):
        check_result(r, expected, ALL_METRICS, ("step", "channel"))
        for name in output_names(ALL_METRICS)[:-2]:
            assert np.isnan(r[name].sel(step=0, channel="c1"))
            assert np.isnan(r[name].sel(step=25, channel="c2"))
            assert np.isnan(r[name].sel(step=10, channel="c0"))
        assert int(r["n_reference"].sel(step=10, channel="c1")) == 0
        assert int(r["n"].sel(step=25, channel="c2")) == 0
        assert int(r["n"].sel(step=10, channel="c0")) == 0


def test_single_value_groups_match_scipy():
    """One finite value on a side is enough for every metric."""
    da = xr.DataArray(np.array([[3.0, np.nan, np.nan], [1.0, 2.0, np.nan]]),
                      dims=("step", "k"), coords={"step": [0, 1]})
    res = ts.shift(da, reference="initial", metrics=ALL_METRICS)
    pairs = {(0,): (da.values[0], da.values[0]), (1,): (da.values[1], da.values[0])}
    check_result(res, expected_dataset(pairs, (2,), ALL_METRICS), ALL_METRICS, ("step",))


# --------------------------------------------------------------------------- laziness


@pytest.mark.parametrize("mode", ["initial", "previous", 25, "dataarray"], ids=str)
def test_lazy_until_compute(mode):
    da = make_da()
    lazy_da = da.chunk({"step": 1, "a": 3})
    if mode == "dataarray":
        rng = np.random.default_rng(12)
        ref_np = xr.DataArray(rng.standard_normal((3, 20)), dims=("channel", "k"),
                              coords={"channel": ["c0", "c1", "c2"]})
        ref = ref_np.chunk({"k": 7})
    else:
        ref_np = ref = mode
    with raise_if_dask_computes():
        res = ts.shift(lazy_da, reference=ref, metrics=ALL_METRICS)
        for name in res.data_vars:
            assert isinstance(res[name].data, dask.array.Array), name
    got = res.compute()
    want = ts.shift(da, reference=ref_np, metrics=ALL_METRICS)
    for name in res.data_vars:
        assert_allclose(got[name].values, want[name].values, rtol=1e-12, atol=0,
                        equal_nan=True, err_msg=name)
    # and with a subsampling budget that is exceeded
    with raise_if_dask_computes():
        res = ts.shift(lazy_da, reference=ref, metrics=ALL_METRICS, max_samples=10)
    assert isinstance(res["n"].data, dask.array.Array)
    res.compute()


# --------------------------------------------------------------------------- subsampling


def test_subsampling_sizes_reproducible_and_chunking_independent():
    da = make_da(nstep=4, nchan=3, shape=(10, 12), nonfinite=True, seed=4)  # ~108 finite
    cap = 40
    base = ts.shift(da, reference="initial", metrics=ALL_METRICS, max_samples=cap, seed=3)
    finite = np.isfinite(_groups(da, ("step", "channel")).values).reshape(4, 3, -1).sum(-1)
    assert finite.min() > cap
    assert_array_equal(base["n"].values, cap)
    assert_array_equal(base["n_reference"].values, cap)
    again = ts.shift(da, reference="initial", metrics=ALL_METRICS, max_samples=cap, seed=3)
    for chunks in ({"step": 1}, {"a": 3, "b": 5}, {"step": 3, "channel": 2, "b": 7}):
        lazy = ts.shift(da.chunk(chunks), reference="initial", metrics=ALL_METRICS,
                        max_samples=cap, seed=3).compute()
        for name in base.data_vars:
            assert_array_equal(lazy[name].values, base[name].values, err_msg=f"{name} {chunks}")
    for name in base.data_vars:
        assert_array_equal(again[name].values, base[name].values, err_msg=name)
    other = ts.shift(da, reference="initial", metrics=ALL_METRICS, max_samples=cap, seed=4)
    assert not np.array_equal(other["wasserstein"].values, base["wasserstein"].values)
    # a subsampled result is not the full-sample result
    full = ts.shift(da, reference="initial", metrics=ALL_METRICS, max_samples=None)
    assert not np.allclose(full["wasserstein"].values[1:], base["wasserstein"].values[1:])
    # metric values stay in their ranges
    assert np.all((base["ks"].values >= 0) & (base["ks"].values <= 1))
    assert np.all((base["js"].values >= 0) & (base["js"].values <= 1 + 1e-12))
    assert np.all((base["ks_pvalue"].values >= 0) & (base["ks_pvalue"].values <= 1))


def test_subsampling_of_one_side_only():
    """Sample above max_samples, reference below: n capped, n_reference untouched."""
    rng = np.random.default_rng(21)
    da = xr.DataArray(rng.normal(size=(2, 300)), dims=("channel", "k"))
    ref = xr.DataArray(rng.normal(size=(2, 30)), dims=("channel", "j"))
    res = ts.shift(da, reference=ref, max_samples=100)
    assert_array_equal(res["n"].values, 100)
    assert_array_equal(res["n_reference"].values, 30)


def test_no_subsampling_at_or_below_max_samples():
    da = make_da(nstep=3, shape=(5, 6), nonfinite=False)  # 30 per group
    res = ts.shift(da, reference="previous", metrics=ALL_METRICS, max_samples=30)
    expected = expected_stepwise(da, STEP_MODES["previous"], ALL_METRICS)
    check_result(res, expected, ALL_METRICS, ("step", "channel"))


# --------------------------------------------------------------------------- properties

_values = hst.one_of(
    hst.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False),
    hst.integers(-4, 4).map(float),  # many ties
)


def _sample_strategy(min_size=1, max_size=40):
    return hnp.arrays(np.float64, hst.integers(min_size, max_size), elements=_values)


def _shift_1d(a, b, **kw):
    res = ts.shift(xr.DataArray(a, dims="x"), reference=xr.DataArray(b, dims="y"), **kw)
    return {k: float(v) for k, v in res.data_vars.items()}


@settings(max_examples=30, deadline=None)
@given(a=_sample_strategy())
def test_property_self_shift_is_zero(a):
    for res in (_shift_1d(a, a.copy(), metrics=ALL_METRICS),
                {k: float(v.isel(step=0)) for k, v in ts.shift(
                    xr.DataArray(a[None, :], dims=("step", "x")),
                    metrics=ALL_METRICS).data_vars.items()}):
        for m in ("wasserstein", "ks", "energy", "js"):
            assert abs(res[m]) <= ATOL, (m, res[m])
        assert res["hellinger"] ** 2 <= ATOL, res["hellinger"]
        assert_allclose(res["ks_pvalue"], 1.0, atol=P_ATOL)
        assert res["n"] == res["n_reference"] == a.size


@settings(max_examples=30, deadline=None)
@given(a=_sample_strategy(), c=hst.floats(-50, 50, allow_nan=False, allow_infinity=False))
def test_property_w1_of_translation(a, c):
    b = a + c
    want = st.wasserstein_distance(b, a)
    assert_allclose(want, abs(c), rtol=1e-9, atol=1e-9)  # sanity of the property itself
    res = _shift_1d(b, a, metrics=("wasserstein",))
    assert_allclose(res["wasserstein"], want, rtol=RTOL, atol=ATOL)
    assert_allclose(res["wasserstein"], abs(c), rtol=1e-9, atol=1e-9)
    # the same through a two-step da and reference="initial"
    da = xr.DataArray(np.stack([a, b]), dims=("step", "x"), coords={"step": [0, 1]})
    two = ts.shift(da, metrics=("wasserstein",))["wasserstein"].values
    assert_allclose(two, [0.0, abs(c)], rtol=1e-9, atol=1e-9)


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@settings(max_examples=30, deadline=None)
@given(a=_sample_strategy(), b=_sample_strategy(1, 25))
def test_property_symmetric_and_unequal_sizes(a, b):
    ab = _shift_1d(a, b, metrics=ALL_METRICS)
    ba = _shift_1d(b, a, metrics=ALL_METRICS)
    want = reference_metrics(a, b, ALL_METRICS)
    for m in ALL_METRICS:
        assert_metric_close(m, ab[m], want[m], err=f"{m} a-vs-b")
        assert_metric_close(m, ba[m], ab[m], err=f"{m} symmetry")
    assert_metric_close("ks_pvalue", ab["ks_pvalue"], want["ks_pvalue"])
    assert (ab["n"], ab["n_reference"]) == (a.size, b.size)
    assert (ba["n"], ba["n_reference"]) == (b.size, a.size)

"""ts.moments of the exact moments a subsampled series stores equals the moments
of the full tensors (scipy on the full data)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import xarray as xr

import tensorstats as ts


@pytest.fixture
def subsampled(tmp_path):
    rng = np.random.default_rng(0)
    xs = []
    with ts.Recorder(tmp_path / "r.zarr") as rec:
        for step in range(3):
            x = (rng.standard_t(4, size=(8, 5, 20, 20)) * (step + 1) + 3).astype(np.float32)
            x[0, 0, 0, :3] = np.nan
            x[1, 2, 0, 0] = np.inf
            if step == 1:
                x[:, 4] = np.nan  # a channel with no finite value: stored as NaN moments
            xs.append(x)
            rec.record("feature", "conv", x, step=step * 10, channel_axis=1, max_elements=100)
    full = np.stack(xs).transpose(0, 2, 1, 3, 4).reshape(3, 5, -1).astype(np.float64)
    return ts.open_run(tmp_path / "r.zarr"), full


def test_stored_moments_are_those_of_the_full_tensor(subsampled):
    run, full = subsampled
    assert run["feature", "conv"].sizes["element"] == 100  # the sample is small...
    stored = run.moments("feature", "conv")
    res = ts.moments(stored)
    assert res["mean"].chunks is not None  # lazy
    res = res.compute()
    assert res["mean"].dims == ("step", "channel")
    np.testing.assert_array_equal(res["step"], [0, 10, 20])
    for s in range(3):
        for c in range(5):
            row = full[s, c]
            v = row[np.isfinite(row)]
            assert res["count"][s, c] == v.size
            if v.size == 0:
                assert np.isnan(res["mean"][s, c]) and np.isnan(res["var"][s, c])
                continue
            assert res["nan_count"][s, c] == np.isnan(row).sum()
            assert res["inf_count"][s, c] == np.isinf(row).sum()
            np.testing.assert_allclose(res["mean"][s, c], v.mean(), rtol=1e-12)
            np.testing.assert_allclose(res["var"][s, c], v.var(), rtol=1e-10)
            np.testing.assert_allclose(res["skew"][s, c], st.skew(v), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(res["kurtosis"][s, c], st.kurtosis(v), rtol=1e-9)
            assert res["min"][s, c] == v.min() and res["max"][s, c] == v.max()


def test_stored_moments_merge_over_pooled_dims(subsampled):
    run, full = subsampled
    res = ts.moments(run.moments("feature", "conv"), by="channel").compute()
    for c in range(5):
        v = full[:, c].ravel()
        v = v[np.isfinite(v)]
        np.testing.assert_allclose(res["var"][c], v.var(), rtol=1e-10)
        np.testing.assert_allclose(res["kurtosis"][c], st.kurtosis(v), rtol=1e-9)
    everything = ts.moments(run.moments("feature", "conv"), by=()).compute()
    v = full[np.isfinite(full)]
    np.testing.assert_allclose(everything["std"], v.std(), rtol=1e-10)


def test_a_moment_dim_without_the_stored_fields_is_refused():
    da = xr.DataArray(np.zeros((2, 3)), dims=("step", "moment"),
                      coords={"moment": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="stored moments"):
        ts.moments(da)

"""ts.moments / ts.normality over a run store on disk give the same numbers under
every Dask scheduler, a distributed Client included, and for NumPy input."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import tensorstats as ts


@pytest.fixture(scope="module")
def feature(tmp_path_factory):
    path = tmp_path_factory.mktemp("sched") / "run.zarr"
    rng = np.random.default_rng(0)
    with ts.Recorder(path) as rec:
        for step in range(6):
            x = rng.standard_t(5, size=(16, 4, 6, 6)).astype(np.float32)
            x[0, 0, 0, :2] = np.nan
            rec.record("feature", "conv", x, step=step * 10, channel_axis=1)
    # small dask chunks: several steps per task, several tasks per layer
    return ts.open_run(path, chunk_bytes=2 * 16 * 4 * 6 * 6 * 4)["feature", "conv"]


def _analyses(da: xr.DataArray) -> list[xr.Dataset]:
    return [ts.moments(da), ts.moments(da, by="channel"),
            ts.normality(da, tests=("shapiro", "anderson", "dagostino", "jarque_bera")),
            ts.normality(da, by="step", max_samples=300, seed=3)]


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    assert set(a.data_vars) == set(b.data_vars)
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)


def test_feature_is_chunked(feature):
    assert feature.data.npartitions > 1


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_local_schedulers_agree_with_synchronous_and_numpy(feature, scheduler):
    lazy = _analyses(feature)
    ref = [r.compute(scheduler="synchronous") for r in lazy]
    for got, want in zip([r.compute(scheduler=scheduler) for r in lazy], ref, strict=True):
        _same(got, want)
    for got, want in zip(_analyses(feature.load()), ref, strict=True):
        for k in want.data_vars:  # NumPy input runs the same kernels, in other block sizes
            np.testing.assert_allclose(got[k].values, want[k].values, rtol=1e-10, atol=1e-12,
                                       equal_nan=True, err_msg=k)


def test_distributed_client_agrees(feature):
    distributed = pytest.importorskip("dask.distributed")
    lazy = _analyses(feature)
    ref = [r.compute(scheduler="synchronous") for r in lazy]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        got = client.compute(lazy, sync=True)
    for g, want in zip(got, ref, strict=True):
        _same(g, want)

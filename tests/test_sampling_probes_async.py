"""Subsampling with exact full-tensor moments, probe series, and asynchronous writing."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import xarray as xr
from scipy import stats

import tensorstats as ts
from tensorstats.collect.sampling import MOMENT_NAMES, channel_moments

rng = np.random.default_rng(0)


def _reference_moments(x):
    """Brute force, one channel at a time, scipy for the higher moments."""
    out = []
    for row in np.asarray(x, dtype=np.float64):
        fin = row[np.isfinite(row)]
        n = len(fin)
        if n == 0:
            out.append([0, np.isnan(row).sum(), np.isinf(row).sum()] + [np.nan] * 6)
            continue
        mean = fin.mean()
        out.append([n, np.isnan(row).sum(), np.isinf(row).sum(), mean,
                    n * np.var(fin), n * stats.moment(fin, 3), n * stats.moment(fin, 4),
                    fin.min(), fin.max()])
    return np.array(out, dtype=np.float64)


def test_channel_moments_against_scipy():
    x = rng.standard_normal((5, 300)) * 3 + 1e3
    x[1, :7] = np.nan
    x[2, 3] = np.inf
    x[3, 4] = -np.inf
    x[4, :] = np.nan
    np.testing.assert_allclose(channel_moments(x), _reference_moments(x), rtol=1e-9, atol=1e-6)


def test_max_elements_keeps_fixed_positions_and_exact_moments(store):
    shape = (8, 6, 5, 5)  # NCHW, 200 elements per channel
    data = [rng.standard_normal(shape).astype(np.float32) * (s + 1) for s in range(3)]
    with ts.Recorder(store, seed=7) as rec:
        for s, x in enumerate(data):
            rec.record("feature", "conv1", x, step=s * 10, channel_axis=1, max_elements=50)
    run = ts.open_run(store)
    da = run["feature", "conv1"]
    assert da.dims == ("step", "channel", "element")
    assert da.sizes == {"step": 3, "channel": 6, "element": 50}
    pos = da["position"].values
    assert len(np.unique(pos)) == 50 and pos.min() >= 0 and pos.max() < 200
    for s, x in enumerate(data):
        flat = np.moveaxis(x, 1, 0).reshape(6, -1)
        np.testing.assert_array_equal(da.values[s], flat[:, pos])  # same positions every step
        m = run.moments("feature", "conv1")
        assert m.dims == ("step", "channel", "moment")
        assert list(m["moment"].values) == list(MOMENT_NAMES)
        np.testing.assert_allclose(m.values[s], _reference_moments(flat), rtol=1e-6)
    assert da.attrs["max_elements"] == 50 and da.attrs["source_shape"] == list(shape)
    # plain xarray sees the same arrays
    node = xr.open_datatree(store, engine="zarr")["tensors/feature/conv1"].ds
    np.testing.assert_array_equal(node["indices"].values, pos)
    np.testing.assert_array_equal(node["tensor"].values, da.values)
    # a smaller tensor than max_elements is stored in full, without moments
    with ts.Recorder(store, mode="a") as rec:
        rec.record("weight", "b", np.ones(4), step=0, max_elements=50)
        rec.record("feature", "conv1", data[0], step=40, channel_axis=1, max_elements=50)
        with pytest.raises(ValueError, match="max_elements=60 differs from 50"):
            rec.record("feature", "conv1", data[0], step=50, channel_axis=1, max_elements=60)
    run = ts.open_run(store)
    assert run.moments("weight", "b") is None
    np.testing.assert_array_equal(run["feature", "conv1"].values[-1],
                                  np.moveaxis(data[0], 1, 0).reshape(6, -1)[:, pos])


def test_max_elements_without_channel_axis(store):
    x = rng.standard_normal((30, 20))
    with ts.Recorder(store) as rec:
        rec.record("input", "tokens", x, step=0, channel_axis=None, max_elements=10)
    run = ts.open_run(store)
    da = run["input", "tokens"]
    assert da.dims == ("step", "element")
    np.testing.assert_array_equal(da.values[0], x.reshape(-1)[da["position"].values])
    np.testing.assert_allclose(run.moments("input", "tokens").values[0],
                               _reference_moments(x.reshape(1, -1))[0], rtol=1e-9)


def test_probe_series_are_separate(store):
    train, valid = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    with ts.Recorder(store) as rec:
        rec.record("feature", "fc", train, step=0, channel_axis=1)
        rec.record("feature", "fc", valid, step=0, channel_axis=1, probe="valid")
        rec.record("feature", "fc", 2 * valid, step=5, channel_axis=1, probe="valid")
    run = ts.open_run(store)
    assert run.probes == ["valid"]
    np.testing.assert_array_equal(run["feature", "fc"].values[0], train.T)
    probe = run.probe("valid")
    assert probe.kinds == ["feature"] and probe.layers("feature") == ["fc"]
    np.testing.assert_array_equal(probe["feature", "fc"].values, np.stack([valid.T, 2 * valid.T]))
    assert probe["feature", "fc"].attrs["probe"] == "valid"
    assert "probes: valid" in repr(run)
    assert "probes/valid/feature/fc" in run.tree.groups or "/probes/valid/feature/fc" in \
        run.tree.groups
    plain = xr.open_datatree(store, engine="zarr")
    np.testing.assert_array_equal(plain["probes/valid/feature/fc"].ds["tensor"].values[1],
                                  2 * valid.T)
    with pytest.raises(KeyError, match="no probe 'test'"):
        run.probe("test")


def test_series_attrs_stored_and_checked(store):
    meta = {"module": {"type": "Conv2d", "kernel_size": [3, 3], "stride": [1, 1]}}
    with ts.Recorder(store) as rec:
        rec.record("weight", "conv1.weight", np.ones((2, 3)), step=0, attrs=meta)
        rec.record("weight", "conv1.weight", np.ones((2, 3)), step=1, attrs=meta)
        with pytest.raises(ValueError, match="attrs .* differ"):
            rec.record("weight", "conv1.weight", np.ones((2, 3)), step=2, attrs={"module": {}})
    da = ts.open_run(store)["weight", "conv1.weight"]
    assert da.attrs["module"] == meta["module"]


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_asynchronous_equals_synchronous(tmp_path, codec):
    data = [rng.standard_normal((16, 8, 4, 4)).astype(np.float32) for _ in range(6)]
    for name, asynchronous in (("sync", False), ("async", True)):
        with ts.Recorder(tmp_path / f"{name}.zarr", codec=codec,
                         asynchronous=asynchronous) as rec:
            assert rec.asynchronous is asynchronous
            for s, x in enumerate(data):
                buf = x.copy()
                rec.record("feature", "c", buf, step=s, channel_axis=1)
                rec.record("weight", "w", buf[0], step=s, max_elements=8)
                rec.record_scalar("loss", float(s), step=s)
                buf[:] = -1  # the caller reuses its buffer at once: must not leak in
    a, b = ts.open_run(tmp_path / "sync.zarr"), ts.open_run(tmp_path / "async.zarr")
    for key in (("feature", "c"), ("weight", "w")):
        xr.testing.assert_identical(a[key].compute(), b[key].compute())
    np.testing.assert_array_equal(a.moments("weight", "w").values,
                                  b.moments("weight", "w").values)
    xr.testing.assert_identical(a.scalars.compute(), b.scalars.compute())


def test_asynchronous_flush_commits_and_bounds_memory(store):
    x = np.zeros((256, 1024), np.float32)  # 1 MiB
    rec = ts.Recorder(store, asynchronous=True, max_pending_bytes=3 * x.nbytes)
    for s in range(20):
        rec.record("weight", "w", x + s, step=s)
        rec.record_scalar("loss", s / 2, step=s)
        assert rec.pending_bytes <= 3 * x.nbytes
    for s in range(20, 25):  # scalars alone, fewer than one batch
        rec.record_scalar("loss", s / 2, step=s)
    rec.flush()
    assert rec.pending_bytes == 0
    run = ts.open_run(store)  # committed before close
    np.testing.assert_array_equal(run["weight", "w"].values[:, 0, 0], np.arange(20))
    np.testing.assert_array_equal(run.scalars["loss"].values, np.arange(25) / 2)
    assert rec._submitter.writer.peak_pending_bytes <= 3 * x.nbytes
    rec.close()


def test_asynchronous_error_is_raised_in_caller(store, monkeypatch):
    from tensorstats.store import backend as backend_mod

    rec = ts.Recorder(store, asynchronous=True)
    big = np.ones(2048)  # 16 KiB a step: a chunk file per step (small rows are packed)
    rec.record("weight", "w", big, step=0)
    rec.flush()

    def broken(self, key, data, *, replace):
        raise OSError("disk full")

    monkeypatch.setattr(backend_mod.LocalBackend, "write", broken)
    rec.record("weight", "w", big, step=1)  # accepted; the write fails later
    with pytest.raises(OSError, match="background write failed.*disk full") as e:
        rec.flush()
    assert isinstance(e.value.__cause__, OSError)
    with pytest.raises(OSError, match="disk full"):
        rec.record("weight", "w", big, step=2)
    monkeypatch.undo()
    with pytest.raises(OSError, match="disk full"):
        rec.close()
    assert ts.open_run(store)["weight", "w"].sizes["step"] == 1  # what was flushed survives


def test_asynchronous_record_does_not_wait_for_the_disk(store, monkeypatch):
    from tensorstats.store import backend as backend_mod

    gate = threading.Event()
    orig = backend_mod.LocalBackend.write

    def slow(self, key, data, *, replace):
        gate.wait(5)
        return orig(self, key, data, replace=replace)

    rec = ts.Recorder(store, asynchronous=True)
    monkeypatch.setattr(backend_mod.LocalBackend, "write", slow)
    t0 = time.perf_counter()
    rec.record("weight", "w", np.ones((64, 64)), step=0)
    returned_while_blocked = not gate.is_set()
    gate.set()
    rec.close()
    assert returned_while_blocked and time.perf_counter() - t0 < 5
    np.testing.assert_array_equal(ts.open_run(store)["weight", "w"].values[0], np.ones((64, 64)))

"""What is recorded is what is read back: through open_run, plain xarray and zarr."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
import zarr

import tensorstats as ts

rng = np.random.default_rng(0)


def _expected(arr, channel_axis):
    return np.moveaxis(arr, channel_axis, 0) if channel_axis is not None else arr


def _open_plain(path):
    """Plain xarray, no tensorstats involved; must not warn for a closed store."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_datatree(path, engine="zarr")


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int8", "int32", "int64",
                                   "uint16", "bool"])
@pytest.mark.parametrize("codec", ["none", "lz4", "zstd"])
def test_numpy_dtypes_roundtrip(store, dtype, codec):
    steps = [0, 3, 10]
    data = [(rng.standard_normal((6, 4, 5)) * 20).astype(dtype) for _ in steps]
    with ts.Recorder(store, codec=codec) as rec:
        for s, x in zip(steps, data, strict=True):
            rec.record("feature", "blk.0", x, step=s, channel_axis=1)
    run = ts.open_run(store)
    da = run["feature", "blk.0"]
    assert da.dims == ("step", "channel", "dim_0", "dim_2")
    assert da.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(da["step"].values, steps)
    expected = np.stack([_expected(x, 1) for x in data])
    np.testing.assert_array_equal(da.values, expected)

    plain = _open_plain(store)["tensors/feature/blk.0"].ds
    assert plain["tensor"].dims == da.dims
    np.testing.assert_array_equal(plain["step"].values, steps)
    np.testing.assert_array_equal(plain["tensor"].values, expected)

    # and zarr-python alone, with the hierarchy read file by file
    z = zarr.open_group(store, mode="r", use_consolidated=False)
    np.testing.assert_array_equal(z["tensors/feature/blk.0/tensor"][:], expected)


def test_float_special_values_kept(store):
    x = np.array([[np.nan, np.inf, -np.inf, 1.5], [0.0, -0.0, 1e-45, 3e38]], dtype=np.float32)
    with ts.Recorder(store) as rec:
        rec.record("weight", "w", x, step=0)
    got = ts.open_run(store)["weight", "w"].values[0]
    np.testing.assert_array_equal(got, x)  # NaN positions compare equal here
    assert np.signbit(got[1, 1])


@pytest.mark.parametrize("channel_axis", [0, 1, 2, -1, None])
def test_channel_axis_and_dims(store, channel_axis):
    x = rng.standard_normal((3, 4, 5))
    with ts.Recorder(store) as rec:
        rec.record("input", "layer", x, step=7, channel_axis=channel_axis)
    da = ts.open_run(store)["input", "layer"]
    if channel_axis is None:
        assert da.dims == ("step", "dim_0", "dim_1", "dim_2")
    else:
        ax = channel_axis % 3
        others = tuple(f"dim_{i}" for i in range(3) if i != ax)
        assert da.dims == ("step", "channel", *others)
        assert da.sizes["channel"] == x.shape[ax]
    np.testing.assert_array_equal(da.values[0], _expected(x, channel_axis))
    assert da.attrs["source_shape"] == [3, 4, 5]


def test_named_dims(store):
    x = rng.standard_normal((8, 16, 5, 5))
    with ts.Recorder(store) as rec:
        rec.record("feature", "conv1", x, step=0, channel_axis=1, dims=("sample", "h", "w"))
    da = ts.open_run(store)["feature", "conv1"]
    assert da.dims == ("step", "channel", "sample", "h", "w")
    np.testing.assert_array_equal(da.transpose("step", "sample", "channel", "h", "w").values[0], x)


def test_scalar_tensor_and_lists(store):
    with ts.Recorder(store) as rec:
        rec.record("weight", "scale", 2.5, step=0, channel_axis=None)
        rec.record("weight", "scale", np.float32(3.5), step=1, channel_axis=None)
        rec.record("weight", "nested", [[1, 2], [3, 4]], step=0)
    run = ts.open_run(store)
    np.testing.assert_array_equal(run["weight", "scale"].values, [2.5, 3.5])
    assert run["weight", "scale"].dims == ("step",)
    np.testing.assert_array_equal(run["weight", "nested"].values[0], [[1, 2], [3, 4]])


def test_big_tensor_splits_along_channels(store):
    x = rng.standard_normal((10, 7, 3)).astype(np.float32)  # 84 B per channel
    with ts.Recorder(store, chunk_bytes=300) as rec:  # 3 channels per chunk, last one partial
        for s in range(3):
            rec.record("weight", "w", x + s, step=s)
    z = zarr.open_array(store + "/tensors/weight/w/tensor", mode="r")
    assert z.chunks == (1, 3, 7, 3)
    da = ts.open_run(store)["weight", "w"]
    np.testing.assert_array_equal(da.values, np.stack([x + s for s in range(3)]))
    np.testing.assert_array_equal(_open_plain(store)["tensors/weight/w"].ds["tensor"].values,
                                  da.values)


def test_one_chunk_per_step_never_rewritten(store):
    """Appending a step adds new chunk files; the files of earlier steps are untouched."""
    import os

    with ts.Recorder(store) as rec:
        rec.record("weight", "w", np.ones((64, 32)), step=0)  # 16 KiB: a chunk per step
        chunk0 = os.path.join(store, "tensors/weight/w/tensor/c.0.0.0")
        before = os.stat(chunk0)
        rec.record("weight", "w", np.ones((64, 32)), step=1)
        after = os.stat(chunk0)
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert os.path.exists(os.path.join(store, "tensors/weight/w/tensor/c.1.0.0"))


def test_small_rows_are_packed_and_committed_bytes_never_rewritten(store):
    """A bias's steps share one chunk file, each step written into its own slot in place."""
    import os

    folder = os.path.join(store, "tensors/weight/b/tensor")
    with ts.Recorder(store) as rec:
        rec.record("weight", "b", np.arange(16, dtype=np.float32), step=0)
        chunk0 = os.path.join(folder, "c.0.0")
        before, first = os.stat(chunk0), open(chunk0, "rb").read()
        for s in range(1, 5):
            rec.record("weight", "b", np.arange(16, dtype=np.float32) + s, step=s)
        after, now = os.stat(chunk0), open(chunk0, "rb").read()
    assert before.st_ino == after.st_ino  # the same file, not replaced
    assert now[:64] == first[:64]  # step 0's slot (16 float32) unchanged
    assert sorted(os.listdir(folder)) == ["c.0.0", "zarr.json"]  # no file per step
    z = zarr.open_array(folder, mode="r")
    assert z.chunks[0] > 1 and z.shape == (5, 16)
    expected = np.arange(16, dtype=np.float32) + np.arange(5)[:, None]
    np.testing.assert_array_equal(z[:], expected)  # plain zarr-python reads it
    np.testing.assert_array_equal(ts.open_run(store)["weight", "b"].values, expected)


def test_scalars_roundtrip_and_outer_join(store):
    with ts.Recorder(store) as rec:
        for s in range(5):
            rec.record_scalar("loss", 1.0 / (s + 1), step=s)
        rec.record_scalar("lr", 0.1, step=0)
        rec.record_scalar("lr", np.float32(0.05), step=3)
    sc = ts.open_run(store).scalars
    np.testing.assert_array_equal(sc["step"].values, range(5))
    np.testing.assert_allclose(sc["loss"].values, [1 / (s + 1) for s in range(5)])
    lr = [0.1, np.nan, np.nan, float(np.float32(0.05)), np.nan]
    np.testing.assert_array_equal(sc["lr"].values, lr)
    plain = _open_plain(store)["scalars/lr"].ds
    np.testing.assert_array_equal(plain["step"].values, [0, 3])
    np.testing.assert_allclose(plain["value"].values, [0.1, 0.05])


def test_many_scalar_steps_cross_chunk_boundary(store):
    n = 2500  # more than two 1024-step chunks
    with ts.Recorder(store) as rec:
        for s in range(n):
            rec.record_scalar("loss", float(s) * 0.5, step=2 * s)
    sc = ts.open_run(store).scalars
    np.testing.assert_array_equal(sc["step"].values, 2 * np.arange(n))
    np.testing.assert_array_equal(sc["loss"].values, 0.5 * np.arange(n))


def test_attrs_and_metadata(store):
    with ts.Recorder(store, attrs={"init": "kaiming", "lr": 1e-4, "layers": [3, 16]}) as rec:
        rec.record("weight", "w", np.zeros(3, np.float16), step=0)
    run = ts.open_run(store)
    assert run.attrs["init"] == "kaiming" and run.attrs["layers"] == [3, 16]
    meta = run.attrs["tensorstats"]
    assert meta["format"] == "tensorstats.run" and meta["format_version"] == "1.3"
    assert meta["version"] == ts.__version__
    assert run["weight", "w"].attrs["source_dtype"] == "float16"
    assert run["weight", "w"].attrs["kind"] == "weight"
    assert _open_plain(store).attrs["init"] == "kaiming"


def test_append_mode_resumes(store):
    with ts.Recorder(store, attrs={"seed": 1}) as rec:
        for s in range(3):
            rec.record("weight", "w", np.full((2, 2), s, np.float32), step=s)
            rec.record_scalar("loss", s, step=s)
    with ts.Recorder(store, mode="a", attrs={"seed": 1, "resumed": True}) as rec:
        for s in range(3, 6):
            rec.record("weight", "w", np.full((2, 2), s, np.float32), step=s)
            rec.record_scalar("loss", s, step=s)
        rec.record("grad", "w", np.ones((2, 2)), step=5)
    run = ts.open_run(store)
    np.testing.assert_array_equal(run["weight", "w"].values[:, 0, 0], range(6))
    np.testing.assert_array_equal(run.scalars["loss"].values, range(6))
    assert run.kinds == ["grad", "weight"]
    assert run.attrs["resumed"] is True and run.attrs["seed"] == 1
    np.testing.assert_array_equal(_open_plain(store)["tensors/weight/w"].ds["tensor"][:, 0, 0],
                                  range(6))


def test_append_mode_checks_steps_and_shapes_of_existing_series(store):
    with ts.Recorder(store) as rec:
        rec.record("weight", "w", np.zeros(3), step=4)
    with ts.Recorder(store, mode="a") as rec:
        with pytest.raises(ValueError, match="not greater than the last step.*4"):
            rec.record("weight", "w", np.zeros(3), step=4)
        with pytest.raises(ValueError, match=r"shape \(4,\) differs.*\(3,\)"):
            rec.record("weight", "w", np.zeros(4), step=5)


def test_memory_url_roundtrip(memory_url):
    x = rng.standard_normal((4, 3))
    with ts.Recorder(memory_url, attrs={"where": "memory"}) as rec:
        rec.record("weight", "w", x, step=0)
        rec.record("weight", "w", 2 * x, step=1)
        rec.record_scalar("loss", 0.5, step=1)
    run = ts.open_run(memory_url)
    np.testing.assert_array_equal(run["weight", "w"].values, np.stack([x, 2 * x]))
    assert run.attrs["where"] == "memory"
    plain = xr.open_datatree(memory_url, engine="zarr")
    np.testing.assert_array_equal(plain["tensors/weight/w"].ds["tensor"].values,
                                  np.stack([x, 2 * x]))
    with ts.Recorder(memory_url, mode="a") as rec:
        rec.record("weight", "w", 3 * x, step=2)
    assert ts.open_run(memory_url)["weight", "w"].sizes["step"] == 3
    with pytest.raises(FileExistsError):
        ts.Recorder(memory_url)


def test_file_url_is_local(tmp_path):
    url = f"file://{tmp_path}/run.zarr"
    with ts.Recorder(url) as rec:
        rec.record("weight", "w", np.ones(2), step=0)
    assert (tmp_path / "run.zarr" / "zarr.json").exists()
    assert ts.open_run(url)["weight", "w"].shape == (1, 2)


def test_hostile_names_stay_inside_and_roundtrip(tmp_path):
    store = tmp_path / "inner" / "run.zarr"
    names = ["../x", "../../escape", "a/b", "/abs", "..", ".", "tab\there\n", "nul\x00", "__x",
             "c:\\windows", "é ü"]
    with ts.Recorder(store) as rec:
        for i, n in enumerate(names):
            rec.record(n, n, np.full(2, i), step=0)
            rec.record_scalar(n, i, step=0)
    outside = {p for p in tmp_path.rglob("*") if store not in p.parents and p != store}
    assert outside == {tmp_path / "inner"}
    run = ts.open_run(store)
    assert sorted(run.kinds) == sorted(names)
    for i, n in enumerate(names):
        assert run.layers(n) == [n]
        np.testing.assert_array_equal(run[n, n].values, [[i, i]])
        assert run.scalars[n].values.tolist() == [i]
    _open_plain(store)  # still a valid hierarchy for plain xarray


def test_lazy_open_computes_nothing(store):
    from conftest import raise_if_dask_computes

    with ts.Recorder(store) as rec:
        for s in range(3):
            rec.record("weight", "w", np.ones((4, 3)), step=s)
            rec.record_scalar("loss", 1.0, step=s)
    with raise_if_dask_computes():
        run = ts.open_run(store)
        da = run["weight", "w"]
        _ = run.scalars, run.tree, repr(run), (da * 2).mean("channel")
    assert da.chunks is not None

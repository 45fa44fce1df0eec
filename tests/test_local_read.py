"""Direct local chunk reads (store/local_read.py) against zarr-python on the same arrays."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

import tensorstats as ts
from tensorstats.store.local_read import LocalChunkReader

DTYPES = ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
          "uint16", "uint32", "uint64", "bool"]


def _array(tmp_path, dtype, shape, chunks, fill=0, **kw):
    folder = str(tmp_path / "a")
    z = zarr.create_array(folder, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill,
                          compressors=None, **kw)
    return folder, z


def _values(rng, dtype, shape):
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_slices_equal_zarr(tmp_path, dtype):
    rng = np.random.default_rng(len(dtype))
    folder, z = _array(tmp_path, dtype, (9, 3, 4), (1, 3, 4))
    z[:7] = _values(rng, dtype, (7, 3, 4))  # steps 7 and 8: no chunk files (fill value)
    reader = LocalChunkReader.for_array(folder, z)
    assert reader is not None and reader.dtype == np.dtype(dtype) and reader.shape == (9, 3, 4)
    for key in [(slice(0, 9),), (slice(2, 5), slice(None), slice(None)), (slice(6, 9),),
                (slice(4, 4),), (slice(3, 8), slice(1, 3)), (slice(None), slice(0, 2), slice(1, 4)),
                slice(5, None)]:
        got = reader[key]
        want = z[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        np.testing.assert_array_equal(got, want, err_msg=str(key))


def test_multi_step_chunks_and_missing_ones_read_like_zarr(tmp_path):
    folder, z = _array(tmp_path, "float64", (2500,), (1024,), fill=np.nan)
    z[:1500] = np.arange(1500.0)  # chunk 2 never written
    reader = LocalChunkReader.for_array(folder, z)
    assert reader is not None
    for start, stop in [(0, 2500), (1000, 1030), (1023, 1025), (1400, 2100), (2048, 2500), (5, 5)]:
        np.testing.assert_array_equal(reader[start:stop], z[start:stop])


def test_other_indices_go_through_zarr(tmp_path):
    folder, z = _array(tmp_path, "int32", (6, 2), (1, 2))
    z[:] = np.arange(12, dtype=np.int32).reshape(6, 2)
    reader = LocalChunkReader.for_array(folder, z)
    np.testing.assert_array_equal(reader[3], z[3])
    np.testing.assert_array_equal(reader[::2], z[::2])
    np.testing.assert_array_equal(reader[1:5, 1], z[1:5, 1])


@pytest.mark.parametrize("case", ["compressed", "split_step", "big_endian"])
def test_layouts_it_does_not_handle_are_left_to_zarr(tmp_path, case):
    folder = str(tmp_path / "a")
    if case == "compressed":
        z = zarr.create_array(folder, shape=(4, 8), chunks=(1, 8), dtype="float32")
    elif case == "split_step":
        z = zarr.create_array(folder, shape=(4, 8), chunks=(1, 4), dtype="float32",
                              compressors=None)
    else:
        z = zarr.create_array(folder, shape=(4, 8), chunks=(1, 8), dtype="float32",
                              compressors=None, serializer=zarr.codecs.BytesCodec(endian="big"))
    assert LocalChunkReader.for_array(folder, z) is None


def test_a_truncated_chunk_is_an_error_not_garbage(tmp_path):
    folder, z = _array(tmp_path, "float32", (3, 4), (1, 4))
    z[:] = 1.0
    path = os.path.join(folder, "c", "1", "0")
    with open(path, "r+b") as f:
        f.truncate(10)
    reader = LocalChunkReader.for_array(folder, z)
    np.testing.assert_array_equal(reader[0:1], np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="damaged"):
        reader[0:3]


def test_open_run_reads_chunks_directly_and_gets_zarrs_values(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    data = rng.normal(size=(6, 5, 16, 16)).astype(np.float32)  # 5 KiB: a chunk per step
    data[2, 1, 0, 0] = np.nan
    plain, packed = tmp_path / "plain.zarr", tmp_path / "lz4.zarr"
    for path, codec in ((plain, "none"), (packed, "lz4")):
        with ts.Recorder(path, codec=codec) as rec:
            for step in range(6):
                rec.record("feature", "conv", data[step], step=step * 10)
    calls = []
    real = LocalChunkReader._read_chunk
    monkeypatch.setattr(LocalChunkReader, "_read_chunk",
                        lambda self, i, t: calls.append(i) or real(self, i, t))
    got = ts.open_run(plain, chunk_bytes=12000)["feature", "conv"]  # several dask chunks
    assert got.data.npartitions > 1
    values = got.values
    assert sorted(calls) == list(range(6))  # every step read directly, once
    np.testing.assert_array_equal(values, data)
    arr = zarr.open_group(str(plain), mode="r")["tensors/feature/conv/tensor"]
    np.testing.assert_array_equal(values, arr[:])
    calls.clear()
    np.testing.assert_array_equal(ts.open_run(packed)["feature", "conv"].values, data)
    assert calls == []  # compressed chunks go through zarr

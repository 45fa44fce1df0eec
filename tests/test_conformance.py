"""Another Zarr v3 implementation (TensorStore, C++) reads every array we write."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import tensorstats as ts

tensorstore = pytest.importorskip("tensorstore")


def _read(path, key):
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": os.path.join(path, key)}}
    arr = tensorstore.open(spec).result()
    return arr.read().result(), tuple(arr.domain.labels)


@pytest.mark.parametrize("chunk_bytes", [100, 16 << 20])  # default: every row here is packed
@pytest.mark.parametrize("codec", ["none", "lz4", "zstd"])
def test_tensorstore_reads_every_array(tmp_path, codec, chunk_bytes):
    path = str(tmp_path / "run.zarr")
    rng = np.random.default_rng(0)
    tensors = {
        ("feature", "conv/1"): (rng.standard_normal((4, 10, 3, 3)).astype(np.float32), 1),
        ("weight", "w16"): (rng.standard_normal((6, 2)).astype(np.float16), 0),
        ("weight", "i8"): (rng.integers(-100, 100, (5,)).astype(np.int8), 0),
        ("mask", "m"): (rng.random((3, 3)) > 0.5, None),
        ("weight", "f64"): (np.array([[np.nan, np.inf], [-np.inf, 1.0]]), 1),
    }
    with ts.Recorder(path, codec=codec, chunk_bytes=chunk_bytes) as rec:
        for s in (0, 7):
            for (kind, layer), (x, ax) in tensors.items():
                rec.record(kind, layer, x, step=s, channel_axis=ax)
            rec.record_scalar("loss", s / 2, step=s)
    root = json.load(open(os.path.join(path, "zarr.json")))
    for (kind, layer), (x, ax) in tensors.items():
        key = f"tensors/{kind}/{ts.store.encode_name(layer)}"
        got, labels = _read(path, f"{key}/tensor")
        meta = json.load(open(os.path.join(path, key, "tensor", "zarr.json")))
        if chunk_bytes > 100:  # small rows: many steps per chunk (format 1.3)
            assert meta["chunk_grid"]["configuration"]["chunk_shape"][0] > 1, layer
        row = np.moveaxis(x, ax, 0) if ax is not None else x
        np.testing.assert_array_equal(got, np.stack([row, row]))
        assert got.dtype == x.dtype
        assert labels[0] == "step"
        steps, _ = _read(path, f"{key}/step")
        np.testing.assert_array_equal(steps, [0, 7])
        # consolidated metadata describes the same array
        assert root["consolidated_metadata"]["metadata"][f"{key}/tensor"]["shape"][0] == 2
    loss, _ = _read(path, "scalars/loss/value")
    np.testing.assert_array_equal(loss, [0.0, 3.5])

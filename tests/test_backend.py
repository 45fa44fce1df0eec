"""The local backend's fast paths (O_DIRECT, in-place writes, kept descriptors) vs plain I/O."""

from __future__ import annotations

import os

import numpy as np
import pytest

import tensorstats as ts
from tensorstats.collect.buffers import aligned_empty
from tensorstats.store.backend import DIRECT_MIN_BYTES, LocalBackend


@pytest.mark.parametrize("nbytes", [DIRECT_MIN_BYTES, DIRECT_MIN_BYTES + 1, 3 * 2**20 + 4095])
@pytest.mark.parametrize("aligned", [True, False])
def test_large_writes_read_back_exactly(tmp_path, nbytes, aligned):
    rng = np.random.default_rng(nbytes)
    src = aligned_empty(nbytes + 1)
    src[:] = rng.integers(0, 256, nbytes + 1, dtype=np.uint8)
    data = src[:nbytes] if aligned else src[1:]  # an unaligned source goes via the bounce buffer
    b = LocalBackend(tmp_path / "s")
    b.write("a/c.0", memoryview(data), replace=False)
    with open(tmp_path / "s" / "a" / "c.0", "rb") as f:
        assert f.read() == data.tobytes()
    # overwriting a new key again (after a crash) leaves exactly the new bytes
    b.write("a/c.0", memoryview(data[: nbytes // 2]), replace=False)
    assert b.read("a/c.0") == data[: nbytes // 2].tobytes()


def test_in_place_writes_and_replaces_with_kept_descriptors(tmp_path):
    b = LocalBackend(tmp_path / "s")
    b.write("k", b"0123456789", replace=False)
    assert b.write_at("k", 2, b"ab")
    assert b.read("k") == b"01ab456789"
    b.write("k", b"xxxxxxxxxx", replace=True)  # new inode: the kept descriptor must not be used
    assert b.write_at("k", 0, b"Y")
    assert b.read("k") == b"Yxxxxxxxxx"
    assert not b.write_at("missing", 0, b"z")
    b.close()
    assert b.read("k") == b"Yxxxxxxxxx"


def test_many_series_beyond_the_descriptor_cache(tmp_path, monkeypatch):
    import tensorstats.store.backend as backend_mod

    monkeypatch.setattr(backend_mod, "MAX_OPEN_FILES", 4)
    with ts.Recorder(tmp_path / "run.zarr") as rec:
        for s in range(3):
            for i in range(10):
                rec.record("weight", f"w{i}", np.full(2, 10 * s + i), step=s)
    run = ts.open_run(tmp_path / "run.zarr")
    for i in range(10):
        np.testing.assert_array_equal(run["weight", f"w{i}"].values[:, 0], [i, 10 + i, 20 + i])


@pytest.mark.parametrize("asynchronous", [False, True])
def test_big_tensors_through_the_recorder(tmp_path, asynchronous):
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((33, 17, 129)).astype(np.float32) for _ in range(3)]  # odd sizes
    with ts.Recorder(tmp_path / "run.zarr", asynchronous=asynchronous) as rec:
        for s, x in enumerate(data):
            rec.record("feature", "f", x, step=s, channel_axis=1)
    got = ts.open_run(tmp_path / "run.zarr")["feature", "f"].values
    np.testing.assert_array_equal(got, np.stack([np.moveaxis(x, 1, 0) for x in data]))
    assert os.path.getsize(tmp_path / "run.zarr/tensors/feature/f/tensor/c.0.0.0.0") == \
        data[0].nbytes


@pytest.mark.parametrize("key", ["../x", "a/../../b", "a//b", "/abs", "a/./b", "a\\b", ""])
def test_unsafe_keys_are_refused_by_every_backend(tmp_path, key):
    from tensorstats.store.backend import FsspecBackend

    for backend in (LocalBackend(tmp_path / "s"), FsspecBackend("memory://ts-key-test/s")):
        with pytest.raises(ValueError, match="unsafe store key"):
            backend.write(key, b"x", replace=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "b").exists()

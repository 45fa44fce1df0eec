"""``Recorder(durable=True)``: a committed step is flushed to disk, data before commit.

A power loss cannot be staged in a test; what can be checked is the order of
``fsync`` calls the promise rests on: every new chunk file and the folders
holding it are synced before the commit (the length written into the
series' ``zarr.json``), and the commit is synced before ``record`` returns.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import tensorstats as ts


@pytest.fixture
def fsyncs(monkeypatch):
    calls: list[str] = []
    real = os.fsync

    def spy(fd):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc to name the synced files")
    monkeypatch.setattr(os, "fsync", spy)
    return calls


@pytest.mark.parametrize("shape,chunk,new_entry", [
    ((64, 32), "c.1.0.0", True),   # 16 KiB a step: a chunk file of its own, a new folder entry
    ((4, 3), "c.0.0.0", False),    # small: packed, step 1 written in place in step 0's chunk
])
def test_durable_syncs_data_then_commit(tmp_path, fsyncs, shape, chunk, new_entry):
    path = tmp_path / "run.zarr"
    rec = ts.Recorder(path, durable=True)
    rec.record("weight", "w", np.ones(shape), step=0)  # creates the series
    fsyncs.clear()
    rec.record("weight", "w", np.full(shape, 2.0), step=1)
    series = str(path / "tensors" / "weight" / "w")
    chunk = f"{series}/tensor/{chunk}"
    tensor_meta, step_meta = f"{series}/tensor/zarr.json", f"{series}/step/zarr.json"
    assert chunk in fsyncs  # the data
    assert (f"{series}/tensor" in fsyncs) == new_entry  # and a new file's folder entry
    assert tensor_meta in fsyncs and step_meta in fsyncs  # the commit
    last_data = max(fsyncs.index(chunk), fsyncs.index(f"{series}/tensor") if new_entry else 0)
    assert last_data < fsyncs.index(tensor_meta) < fsyncs.index(step_meta)
    assert fsyncs[-1] == step_meta  # the step is committed, and synced, when record returns
    rec.close()
    np.testing.assert_array_equal(ts.open_run(path)["weight", "w"].sel(step=1).values, 2.0)


def test_not_durable_never_syncs(tmp_path, fsyncs):
    with ts.Recorder(tmp_path / "run.zarr") as rec:
        for step in range(3):
            rec.record("weight", "w", np.ones((4, 3)) * step, step=step)
            rec.record_scalar("loss", 1.0, step=step)
    assert fsyncs == []


def test_durable_asynchronous_flush(tmp_path, fsyncs):
    path = tmp_path / "run.zarr"
    with ts.Recorder(path, durable=True, asynchronous=True) as rec:
        rec.record("feature", "f", np.ones((2, 8)), step=0)
        rec.record_scalar("loss", 0.5, step=0)
        rec.flush()
        synced = set(fsyncs)
    assert str(path / "tensors" / "feature" / "f" / "step" / "zarr.json") in synced
    assert str(path / "scalars" / "loss" / "step" / "zarr.json") in synced

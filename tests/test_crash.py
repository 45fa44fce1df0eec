"""No data loss on a crash: SIGKILL at random moments, and a failure injected at every write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import xarray as xr

import tensorstats as ts
from tensorstats.store import backend as backend_mod

pytestmark = pytest.mark.slow

HERE = os.path.dirname(__file__)


def _check_run(path, committed: int):
    """Every step < committed is there with its values; at most one more (in flight)."""
    run = ts.open_run(path)
    for i, layer in enumerate(("conv1", "conv2")):
        da = run["feature", layer]
        steps = da["step"].values
        assert len(steps) >= committed, (layer, len(steps), committed)
        assert len(steps) <= committed + 1
        np.testing.assert_array_equal(steps, np.arange(len(steps)))
        # every value of every step as written (first and last element of each step)
        vals = da.values.reshape(len(steps), -1)
        np.testing.assert_allclose(vals[:, 0], steps + i / 10, rtol=1e-6)
        np.testing.assert_allclose(vals[:, -1], steps + i / 10, rtol=1e-6)
    loss = run.scalars["loss"].dropna("step")
    assert committed <= loss.sizes["step"] <= committed + 1
    np.testing.assert_array_equal(loss.values, np.arange(loss.sizes["step"]))
    return run


@pytest.mark.parametrize("seed", [0])
def test_sigkill_loses_at_most_the_step_in_flight(tmp_path, seed):
    path = str(tmp_path / "run.zarr")
    rng = np.random.default_rng(seed)
    committed = 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    for _trial in range(6):
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "_kill_writer.py"), path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        first = proc.stdout.readline()  # the writer is up and committing
        assert first, proc.stderr.read()
        time.sleep(rng.uniform(0.0, 0.3))  # kill at an arbitrary moment, not at a print
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        printed = [int(x) for x in (first + out).split()]
        committed = max(committed, printed[-1] + 1)
        _check_run(path, committed)  # opens straight after the kill, before any repair
    # Resuming (mode="a") repairs any half-committed append; closing consolidates;
    # then plain xarray reads the store too, without tensorstats.
    ts.Recorder(path, mode="a").close()
    run = _check_run(path, committed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = xr.open_datatree(path, engine="zarr")
    np.testing.assert_array_equal(tree["tensors/feature/conv1"].ds["tensor"].values,
                                  run["feature", "conv1"].values)


class _Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


def _record_steps(rec, start, stop):
    for s in range(start, stop):
        rec.record("weight", "w", np.full((3, 2), float(s)), step=s)
        rec.record("weight", "big", np.full((6, 2), float(s)), step=s)  # split into 3 chunks
        rec.record_scalar("loss", float(s), step=s)


def _install(monkeypatch, on_op):
    """Route every store write (whole-key writes and in-place writes) through ``on_op``."""
    orig_write, orig_at = backend_mod.LocalBackend.write, backend_mod.LocalBackend.write_at

    def write(self, key, data, *, replace):
        on_op(self, "write", key, data, replace)
        return orig_write(self, key, data, replace=replace)

    def write_at(self, key, offset, data):
        on_op(self, "write_at", key, data, True)
        return orig_at(self, key, offset, data)

    monkeypatch.setattr(backend_mod.LocalBackend, "write", write)
    monkeypatch.setattr(backend_mod.LocalBackend, "write_at", write_at)
    return orig_write


def _ops_per_step(tmp_path, monkeypatch):
    ops = []
    rec = ts.Recorder(tmp_path / "count.zarr", chunk_bytes=32)
    _record_steps(rec, 0, 2)
    _install(monkeypatch, lambda *a: ops.append(a[1:3]))
    _record_steps(rec, 2, 3)
    monkeypatch.undo()
    rec.close()
    return ops


@pytest.mark.parametrize("torn", [False, True])
def test_crash_injected_at_every_write(tmp_path, monkeypatch, torn):
    """Die before (or in the middle of) each write of an append; nothing committed is lost."""
    ops = _ops_per_step(tmp_path, monkeypatch)
    assert len(ops) >= 10 and {o for o, _ in ops} == {"write", "write_at"}
    real_write = backend_mod.LocalBackend.write
    for k in range(len(ops)):
        path = tmp_path / f"run{k}{torn}.zarr"
        rec = ts.Recorder(path, chunk_bytes=32)
        _record_steps(rec, 0, 2)
        count = [0]

        def dying(self, op, key, data, replace, _k=k, count=count):
            if count[0] == _k:
                if torn and op == "write" and not replace:  # a torn write of a new key
                    real_write(self, key, bytes(data)[: len(data) // 2], replace=False)
                if torn and op == "write" and replace:  # killed between temp file and rename
                    folder, name = os.path.split(self._path(key))
                    with open(os.path.join(folder, f".{name}.999.0.tmp"), "wb") as f:
                        f.write(bytes(data))
                raise _Crash
            count[0] += 1

        _install(monkeypatch, dying)
        with pytest.raises(_Crash):
            _record_steps(rec, 2, 3)
        monkeypatch.undo()
        rec._release_lock()  # the writer "died": the system drops a dead process's lock

        run = ts.open_run(path)
        for layer in ("w", "big"):
            da = run["weight", layer]
            n = da.sizes["step"]
            assert n in (2, 3), (k, layer, n)
            np.testing.assert_array_equal(da["step"].values, np.arange(n))
            np.testing.assert_array_equal(da.values[:, 0, 0], np.arange(n))
            np.testing.assert_array_equal(da.values[:, -1, -1], np.arange(n))
        # resuming alone repairs: plain xarray then reads every series
        ts.Recorder(path, mode="a").close()
        plain = xr.open_datatree(path, engine="zarr")
        assert plain["tensors/weight/w"].ds.sizes["step"] in (2, 3)
        # resume: repairs, continues, and the whole history reads back
        with ts.Recorder(path, mode="a", chunk_bytes=32) as rec2:
            for layer, shape in (("w", (3, 2)), ("big", (6, 2))):
                last = int(ts.open_run(path)["weight", layer]["step"][-1])
                for s in range(last + 1, 5):
                    rec2.record("weight", layer, np.full(shape, float(s)), step=s)
            loss_steps = ts.open_run(path).scalars["loss"].dropna("step")["step"].values
            for s in range(int(loss_steps[-1]) + 1, 5):
                rec2.record_scalar("loss", float(s), step=s)
        run = ts.open_run(path)
        for layer in ("w", "big"):
            np.testing.assert_array_equal(run["weight", layer].values[:, 0, 0], np.arange(5))
        np.testing.assert_array_equal(run.scalars["loss"].values, np.arange(5))
        tree = xr.open_datatree(path, engine="zarr")
        np.testing.assert_array_equal(tree["tensors/weight/big"].ds["tensor"].values[:, -1, -1],
                                      np.arange(5))

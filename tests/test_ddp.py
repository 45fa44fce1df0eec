"""Data-parallel training (DDP, gloo on CPU, 2 real processes) recorded into one run.

Each rank's recorded features and feature gradients equal its own forward and
backward pass; ``grad`` is the all-reduced gradient the optimiser used (the
same on both ranks, recorded once); ``local_grad`` is each rank's own
gradient before the all-reduce, and their mean is ``grad``. A rank killed
with SIGKILL leaves the other rank's series and everything committed intact.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensorstats as ts

pytestmark = pytest.mark.slow

pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

WORKER = Path(__file__).with_name("_ddp_worker.py")
STEPS = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(store: Path, tmp: Path, kill_rank: int | None = None, kill_at: int = -1):
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for rank in range(2):
        args = [sys.executable, str(WORKER), str(rank), "2", str(port), str(store),
                str(tmp / f"rank{rank}.npz")]
        if rank == kill_rank:
            args.append(str(kill_at))
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    store = tmp / "run.zarr"
    procs = launch(store, tmp)
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]
    refs = [dict(np.load(tmp / f"rank{r}.npz")) for r in range(2)]
    return ts.open_run(store), refs, store


def test_each_rank_records_its_own_features(ddp_run):
    run, refs, _ = ddp_run
    feat = run["feature", "module.0"]
    assert feat.dims[:3] == ("rank", "step", "channel")
    assert feat["rank"].values.tolist() == [0, 1]
    fgrad = run["feature_grad", "module.0"]
    for rank in range(2):
        for step in range(STEPS):
            # stored (channel, sample): the reference is (sample, channel)
            np.testing.assert_allclose(feat.sel(rank=rank, step=step).values,
                                       refs[rank][f"feature/{step}"].T, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(fgrad.sel(rank=rank, step=step).values,
                                       refs[rank][f"feature_grad/{step}"].T, rtol=1e-5,
                                       atol=1e-7)


def test_grad_is_the_all_reduced_gradient_and_stored_once(ddp_run):
    run, refs, store = ddp_run
    grad = run["grad", "module.0.weight"]
    assert "rank" not in grad.dims  # shared: rank 0 wrote it once
    assert not (store / "ranks" / "1" / "tensors" / "grad").exists()
    for step in range(STEPS):
        both = [refs[r][f"grad/{step}"] for r in range(2)]
        np.testing.assert_allclose(both[0], both[1], rtol=1e-6)  # what DDP made of it
        np.testing.assert_allclose(grad.sel(step=step).values, both[0], rtol=1e-6, atol=1e-8)
        local = [refs[r][f"local_grad/{step}"] for r in range(2)]
        np.testing.assert_allclose(grad.sel(step=step).values, np.mean(local, axis=0),
                                   rtol=1e-5, atol=1e-7)


def test_local_grad_is_each_ranks_own(ddp_run):
    run, refs, _ = ddp_run
    local = run["local_grad", "module.0.weight"]
    assert local.dims[0] == "rank"
    for rank in range(2):
        for step in range(STEPS):
            np.testing.assert_allclose(local.sel(rank=rank, step=step).values,
                                       refs[rank][f"local_grad/{step}"], rtol=1e-5, atol=1e-7)
    spread = local.sel(step=0).std("rank")
    assert float(spread.max()) > 0  # the ranks' batches differ


def test_weights_scalars_and_check(ddp_run):
    run, refs, store = ddp_run
    w = run["weight", "module.0.weight"]
    for step in range(STEPS):
        np.testing.assert_array_equal(w.sel(step=step).values, refs[0][f"weight/{step}"])
    assert run.scalars["loss"].sizes["step"] == STEPS
    assert run.attrs["tensorstats"]["world_size"] == 2
    assert ts.check(store) == []
    m = ts.moments(run["feature", "module.0"]).compute()  # rank pooled with the samples
    both = np.concatenate([refs[r]["feature/2"] for r in range(2)])
    np.testing.assert_allclose(m["mean"].sel(step=2).values, both.mean(0), rtol=1e-6)


def test_a_rank_killed_mid_run(tmp_path):
    store = tmp_path / "run.zarr"
    procs = launch(store, tmp_path, kill_rank=1, kill_at=2)
    killed, survivor = procs[1], procs[0]
    killed.wait(timeout=180)
    assert killed.returncode == -9
    survivor.kill()  # its peer is gone: DDP would wait for it forever
    survivor.wait(timeout=60)
    run = ts.open_run(store)
    feat = run["feature", "module.0"]
    steps = {r: feat.sel(rank=r).dropna("step", how="all")["step"].values.tolist()
             for r in (0, 1)}
    assert steps[1] == [0, 1]  # everything rank 1 flushed before it died
    assert steps[0][:2] == [0, 1]
    assert not [p for p in ts.check(store) if p.severity == "error"]


def test_ranks_without_a_process_group(tmp_path, monkeypatch):
    """Explicit ranks, no torch.distributed: rank 0 alone never waits; rank 1 joins only
    this run's store, not one an earlier run left at the same path."""
    import json

    from tensorstats.collect import ranks

    path = tmp_path / "run.zarr"
    with ts.Recorder(path, rank=0, world_size=2) as r0:  # no other rank: nothing waits
        r0.record("feature", "f", np.ones((2, 3)), step=0)
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["tensorstats"]["created"] = "2020-01-01T00:00:00+00:00"  # stale
    meta.pop("consolidated_metadata", None)
    meta_path.write_text(json.dumps(meta))
    monkeypatch.setattr(ranks, "JOIN_TIMEOUT", 0.3)
    with pytest.raises(TimeoutError, match="earlier run"):
        ts.Recorder(path, rank=1, world_size=2)
    assert not (path / "ranks" / "1").exists()
    with ts.Recorder(path, rank=1, world_size=2, mode="a") as r1:  # resuming joins it
        r1.record("feature", "f", np.zeros((2, 3)), step=0)
    f = ts.open_run(path)["feature", "f"]
    assert f["rank"].values.tolist() == [0, 1]
    np.testing.assert_array_equal(f.sel(rank=1, step=0).values, 0)

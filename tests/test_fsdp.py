"""Sharded parameters: FSDP2 (``fully_shard``) on CPU with gloo, 2 real processes.

Each rank records its own shard of every weight and reduced gradient, with
its offset in the full tensor; ``open_run`` assembles the full tensors
lazily. Compared with ``DTensor.full_tensor()`` on the ranks (what W&B's
``watch`` cannot record under FSDP).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tensorstats as ts

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)
try:
    from torch.distributed.fsdp import fully_shard  # noqa: F401
except ImportError:
    pytest.skip("this torch has no FSDP2 (fully_shard)", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
from test_ddp import free_port  # noqa: E402

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("_fsdp_worker.py")
STEPS = 3
PARAMS = ("0.weight", "0.bias", "2.weight", "2.bias")


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    store, port = tmp / "run.zarr", free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), "2", str(port), str(store),
                               str(tmp / f"rank{r}.npz")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-3000:]
    return ts.open_run(store), [dict(np.load(tmp / f"rank{r}.npz")) for r in range(2)], store


def test_each_rank_stores_only_its_shard(fsdp_run):
    _, _, store = fsdp_run
    shapes = {}
    for rank in range(2):
        node = ts.open_run(store).tree[f"ranks/{rank}/tensors/weight/0.weight"]
        shapes[rank] = node["tensor"].shape
    assert shapes == {0: (STEPS, 3, 6), 1: (STEPS, 2, 6)}  # 5 rows, split 3 + 2
    assert not (store / "tensors" / "weight").exists()


@pytest.mark.parametrize("kind", ["weight", "grad"])
def test_full_tensors_are_assembled(fsdp_run, kind):
    run, refs, _ = fsdp_run
    for name in PARAMS:
        da = run[kind, name]
        assert "rank" not in da.dims
        for step in range(STEPS):
            want = refs[0][f"{kind}/{name}/{step}"]
            np.testing.assert_array_equal(refs[1][f"{kind}/{name}/{step}"], want)
            np.testing.assert_allclose(da.sel(step=step).values, want, rtol=1e-6, atol=1e-8)


def test_features_are_per_rank(fsdp_run):
    run, refs, _ = fsdp_run
    feat = run["feature", "0"]
    assert feat.dims[:2] == ("rank", "step")
    for rank in range(2):
        for step in range(STEPS):
            np.testing.assert_allclose(feat.sel(rank=rank, step=step).values,
                                       refs[rank][f"feature/{step}"].T, rtol=1e-6, atol=1e-7)


def test_analyses_and_check_on_the_assembled_run(fsdp_run):
    run, refs, store = fsdp_run
    m = ts.moments(run["weight", "0.weight"], by="step").compute()
    want = [refs[0][f"weight/0.weight/{s}"].std() for s in range(STEPS)]
    np.testing.assert_allclose(m["std"].values, want, rtol=1e-6)
    assert ts.check(store) == []

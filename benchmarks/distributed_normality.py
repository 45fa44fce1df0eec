"""``ts.normality`` of a whole run on a ``dask.distributed`` cluster: 1 worker vs 2.

Claim (issue 12): on a ``LocalCluster`` of two worker processes (one thread
each), the normality analysis of a run is at least 1.6x faster than on one
worker process (one thread).

The run: ``--layers`` layers (default 8) of ``--steps`` steps (default 50) of a
(16 channels, 4096 values) float32 ``feature``, 256 KiB per step, 100 MiB in all,
written with ``ts.Recorder``. It is opened with ``ts.open_run`` (default dask
chunks of up to 64 MiB: here all 50 steps of a layer in one task of 12.5 MiB) and
analysed with ``ts.normality`` (defaults: Shapiro-Wilk and Anderson-Darling with
effect sizes, by step and channel: 16 x 50 groups of 4096 values per layer).

Arms, each computing the same lazy results (one Dataset per layer, a dict) with
one ``dask.compute(results, scheduler=...)``:

* ``1 worker``: ``LocalCluster(n_workers=1, threads_per_worker=1, processes=True)``;
* ``2 workers``: ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``;
* ``threads``: for reference, dask's threaded scheduler in this process (one
  thread per core).

Both clusters are started before the first round and kept up; every worker is
warmed (imports, numba kernels loaded from the cache, the store's files in the
page cache) by one untimed round. Rounds are interleaved, the order of the arms
shuffled in each round; the figure is the median per arm. The results of every
arm are checked to be identical (``xr.testing.assert_identical``). One more
round per cluster, with dask's task stream recording, shows how the work was
split between the workers and how much of the wall time was overhead.

Run it::

    .venv/bin/python benchmarks/distributed_normality.py            # ~1 min
    .venv/bin/python benchmarks/distributed_normality.py --rounds 3 # quicker

Results: ``docs/benchmarks.md`` and ``docs/distributed.md``. On a machine with
only two cores the 2-worker figure is sensitive to anything else running; the
script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import dask
import numpy as np
import xarray as xr
from dask.distributed import Client, LocalCluster, get_task_stream
from dask.highlevelgraph import HighLevelGraph

import tensorstats as ts

CHANNELS, VALUES = 16, 4096
TARGET = 1.6


def write_store(path: Path, layers: int, steps: int) -> None:
    """The run store: standard-normal features, one series per layer."""
    rng = np.random.default_rng(0)
    with ts.Recorder(path, asynchronous=True) as rec:
        for step in range(steps):
            for i in range(layers):
                x = rng.standard_normal((CHANNELS, VALUES), dtype=np.float32)
                rec.record("feature", f"layer{i}", x, step=step, channel_axis=0)


def analyses(path: Path) -> dict[str, xr.Dataset]:
    """``ts.normality`` of every layer, lazy."""
    run = ts.open_run(path)
    return {layer: ts.normality(run["feature", layer]) for layer in run.layers("feature")}


def compute_all(lazy: dict[str, xr.Dataset], scheduler: object) -> dict[str, xr.Dataset]:
    """Every layer's result, in one ``dask.compute`` so that the layers run in parallel.

    (``ts.normality``'s Datasets are not hit by pydata/xarray#11329, see
    ``docs/distributed.md``.)
    """
    (out,) = dask.compute(lazy, scheduler=scheduler)
    return out


def warm_worker() -> int:
    """Import the analysis and run its kernels once in a worker process; its pid."""
    data = np.random.default_rng(0).standard_normal((2, 64))
    ts.normality(xr.DataArray(data, dims=("channel", "value")))
    return os.getpid()


def start_cluster(stack: ExitStack, workers: int) -> Client:
    """A LocalCluster of ``workers`` processes of one thread each, warmed."""
    cluster = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1,
                                               processes=True, dashboard_address=None))
    client = stack.enter_context(Client(cluster, set_as_default=False))
    client.wait_for_workers(workers)
    pids = client.run(warm_worker)
    assert len(set(pids.values())) == workers
    return client


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench(lazy: dict[str, xr.Dataset], arms: dict[str, object], rounds: int) -> dict:
    """Median seconds per arm over interleaved rounds (after one warm-up round)."""
    reference = None
    for scheduler in arms.values():  # warm-up: page cache, numba, connections
        got = compute_all(lazy, scheduler)
        reference = reference or got
        for layer, ds in got.items():
            xr.testing.assert_identical(ds, reference[layer])
    times: dict[str, list[float]] = {name: [] for name in arms}
    order = list(arms)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            seconds, got = timed(lambda s=arms[name]: compute_all(lazy, s))
            times[name].append(seconds)
            for layer, ds in got.items():
                xr.testing.assert_identical(ds, reference[layer])
    return {name: (statistics.median(v), v) for name, v in times.items()}


def task_split(lazy: dict[str, xr.Dataset], client: Client) -> tuple[float, list[float]]:
    """One more (untimed) round with the task stream on: wall seconds and, per worker,
    the seconds its tasks computed. Wall minus the busiest worker is the overhead
    (scheduling, transfers, gathering the results)."""
    with get_task_stream(client) as stream:
        wall, _ = timed(lambda: compute_all(lazy, client))
    busy: dict[str, float] = {}
    for task in stream.data:
        for part in task["startstops"]:
            if part["action"] == "compute":
                busy[task["worker"]] = busy.get(task["worker"], 0.0) + part["stop"] - part["start"]
    return wall, sorted(busy.values(), reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    load = os.getloadavg()
    size = args.layers * args.steps * CHANNELS * VALUES * 4
    print(f"tensorstats {ts.__version__}, dask {dask.__version__}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"ts.normality of {args.layers} layers x {args.steps} steps x ({CHANNELS}, {VALUES}) "
          f"float32 ({size / 2**20:.0f} MiB); median of {args.rounds} interleaved rounds")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        path = Path(tmp) / "run.zarr"
        write_store(path, args.layers, args.steps)
        lazy = analyses(path)
        tasks = len(HighLevelGraph.merge(*(ds.__dask_graph__() for ds in lazy.values())))
        arms = {"1 worker": start_cluster(stack, 1), "2 workers": start_cluster(stack, 2),
                "threads": "threads"}
        med = bench(lazy, arms, args.rounds)
        splits = {name: task_split(lazy, arms[name]) for name in ("1 worker", "2 workers")}
    print(f"  ({tasks} tasks per compute)")
    for name, (m, all_times) in med.items():
        rounds = " ".join(f"{t:.2f}" for t in all_times)
        print(f"  {name:10s} {m:7.3f} s   (rounds: {rounds})")
    for name, (wall, busy) in splits.items():
        print(f"  {name}: one more round {wall:.3f} s, tasks computing per worker "
              + " + ".join(f"{b:.3f}" for b in busy) + f" s, overhead {wall - busy[0]:.3f} s")
    ratio = med["1 worker"][0] / med["2 workers"][0]
    verdict = "met" if ratio >= TARGET else "NOT met"
    print(f"  1 worker / 2 workers = {ratio:.2f}x  (target >= {TARGET}x: {verdict})")
    load = os.getloadavg()
    print(f"  load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()

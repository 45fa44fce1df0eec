"""Size of the task graph of ``ts.moments`` and ``ts.normality`` over a 100-layer run.

Issue 12 asks what a whole-run analysis sends to a ``dask.distributed`` scheduler.
This builds a run store of ``--layers`` layers (default 100) of ``--steps`` steps
(default 1000), each step a small (4 channels, 32 values) float32 tensor, written
with ``ts.Recorder(asynchronous=True)``. It then opens the run with several dask
chunk sizes (``ts.open_run(chunk_bytes=...)``) and, for ``ts.moments`` and
``ts.normality`` of every layer (one lazy Dataset per layer, in a dict, as a user
computes them with one ``dask.compute``), measures:

* ``tasks``: tasks in the merged graph of all layers (``len`` of the
  ``HighLevelGraph``, which materialises every layer);
* ``HLG bytes``: ``cloudpickle.dumps`` of the ``HighLevelGraph`` as built (layers
  not yet materialised stay compact);
* ``dict bytes``: ``pickle.dumps`` of the materialised graph (``dict(hlg)``), the
  low-level task graph a scheduler works on;
* ``build s``: wall time of the lazy calls (the dict of per-layer analyses; the
  series were indexed, ``run[kind, layer]``, beforehand and are timed apart);
* ``pickle s``: materialising and pickling the low-level graph.

With ``--compute`` it also times computing all layers with the threaded scheduler
(``dask.compute`` of the dict), to show the cost per task, for graphs of up to
``--compute-max-tasks`` tasks (default 200,000).

The store is one Zarr chunk per step per series (``docs/format.md``); dask groups
consecutive steps into chunks of up to ``chunk_bytes``. One step is 512 bytes here,
so ``chunk_bytes=512`` is one task per step, and the default 64 MiB puts all 1000
steps of a layer in one task.

Run it::

    .venv/bin/python benchmarks/graph_size.py             # ~1-2 min on 2 cores
    .venv/bin/python benchmarks/graph_size.py --quick     # 10 layers x 100 steps

Results: ``docs/benchmarks.md`` and ``docs/distributed.md``.
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import dask
import numpy as np
import xarray as xr
from dask.highlevelgraph import HighLevelGraph

import tensorstats as ts
from tensorstats.run import DEFAULT_DASK_CHUNK_BYTES

CHANNELS, VALUES = 4, 32
STEP_BYTES = CHANNELS * VALUES * 4
CHUNK_SIZES = {"64 MiB (default)": DEFAULT_DASK_CHUNK_BYTES, "64 KiB": 64 * 2**10,
               "512 B (1 step/task)": STEP_BYTES}
ANALYSES: dict[str, Callable[[xr.DataArray], xr.Dataset]] = {
    "moments": ts.moments,
    "normality": ts.normality,
}


def layer_name(i: int) -> str:
    """The name of layer ``i`` (sorted names sort like the layers)."""
    return f"blocks.{i:03d}"


def write_store(path: Path, layers: int, steps: int) -> float:
    """Write the run store; return the seconds it took."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((layers, CHANNELS, VALUES)).astype(np.float32)
    t0 = time.perf_counter()
    with ts.Recorder(path, asynchronous=True) as rec:
        for step in range(steps):
            for i in range(layers):
                rec.record("feature", layer_name(i), base[i] * (1 + step * 1e-3), step=step,
                           channel_axis=0)
            rec.record_scalar("loss", 1.0 / (step + 1), step=step)
    return time.perf_counter() - t0


def merged_graph(results: dict[str, xr.Dataset]) -> HighLevelGraph:
    """One graph of every layer's result, as ``dask.compute(results)`` would merge them."""
    return HighLevelGraph.merge(*(ds.__dask_graph__() for ds in results.values()))


def measure(series: dict[str, xr.DataArray], analysis: Callable, compute_max_tasks: int) -> dict:
    """Graph figures of ``analysis`` over every series (and the compute time, up to
    ``compute_max_tasks`` tasks)."""
    t0 = time.perf_counter()
    results = {name: analysis(da) for name, da in series.items()}
    build = time.perf_counter() - t0
    hlg = merged_graph(results)
    hlg_bytes = len(cloudpickle.dumps(hlg))
    t0 = time.perf_counter()
    low = dict(hlg)
    dict_bytes = len(pickle.dumps(low, protocol=pickle.HIGHEST_PROTOCOL))
    pickling = time.perf_counter() - t0
    out = {"tasks": len(low), "hlg_bytes": hlg_bytes, "dict_bytes": dict_bytes,
           "build_s": build, "pickle_s": pickling, "compute_s": float("nan")}
    if len(low) <= compute_max_tasks:
        t0 = time.perf_counter()
        dask.compute(results, scheduler="threads")
        out["compute_s"] = time.perf_counter() - t0
    return out


def open_series(path: Path, chunk_bytes: int) -> tuple[dict[str, xr.DataArray], float, float]:
    """Every layer's lazy DataArray; seconds to open the run and to index the series."""
    t0 = time.perf_counter()
    run = ts.open_run(path, chunk_bytes=chunk_bytes)
    opened = time.perf_counter() - t0
    t0 = time.perf_counter()
    series = {layer: run["feature", layer] for layer in run.layers("feature")}
    return series, opened, time.perf_counter() - t0


def print_row(chunk: str, name: str, steps_per_task: int, m: dict) -> None:
    print(f"{chunk:>20s}  {name:9s} {steps_per_task:6d} {m['tasks']:9d} "
          f"{m['hlg_bytes'] / 2**20:9.2f} {m['dict_bytes'] / 2**20:10.2f} "
          f"{m['dict_bytes'] / m['tasks']:7.0f} {m['build_s']:8.2f} {m['pickle_s']:9.2f}"
          + (f" {m['compute_s']:9.2f}" if m["compute_s"] == m["compute_s"] else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="10 layers x 100 steps")
    parser.add_argument("--compute", action="store_true",
                        help="also time computing every layer (threaded scheduler)")
    parser.add_argument("--compute-max-tasks", type=int, default=200_000)
    parser.add_argument("--store", type=Path, help="reuse (or create) the run store here")
    args = parser.parse_args()
    layers, steps = (10, 100) if args.quick else (args.layers, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "run.zarr"
        if not path.exists():
            seconds = write_store(path, layers, steps)
            print(f"wrote {layers} layers x {steps} steps x ({CHANNELS}, {VALUES}) float32 "
                  f"({layers * steps} chunks of {STEP_BYTES} B) in {seconds:.1f} s")
        print(f"tensorstats {ts.__version__}, dask {dask.__version__}\n")
        print(f"{'chunk_bytes':>20s}  {'analysis':9s} {'steps/':>6s} {'tasks':>9s} "
              f"{'HLG MiB':>9s} {'dict MiB':>10s} {'B/task':>7s} {'build s':>8s} "
              f"{'pickle s':>9s}" + (f" {'compute s':>9s}" if args.compute else ""))
        print(f"{'':>20s}  {'':9s} {'task':>6s}")
        for chunk, chunk_bytes in CHUNK_SIZES.items():
            series, opened, indexed = open_series(path, chunk_bytes)
            first = next(iter(series.values()))
            for name, analysis in ANALYSES.items():
                m = measure(series, analysis, args.compute_max_tasks if args.compute else -1)
                print_row(chunk, name, first.data.chunks[0][0], m)
            print(f"{'':>20s}  (open_run {opened:.2f} s, indexing {len(series)} series "
                  f"{indexed:.2f} s)")


if __name__ == "__main__":
    main()

"""``ts.moments`` over a run store on disk, against the naive xarray composition and a plain read.

Claims (issues 4 and 13):

* ``ts.moments(da)`` is at least 3x faster than the naive xarray composition
  of the same statistics: ``da.mean``, ``da.var``, and ``scipy.stats.skew`` /
  ``scipy.stats.kurtosis`` through ``xr.apply_ufunc`` (plus ``min``/``max``),
  all computed together with one ``dask.compute`` so dask shares the reads;
* it takes at most 1.5x the time of just reading the same data;
* the compiled kernel releases the GIL, so on in-memory input two threads
  beat one (``kernel, 1 thread`` / ``kernel, 2 threads``: the kernel
  ``partial_moments`` over the same 200 MiB held in a NumPy array, the
  channel's values read in place).

The store: a run written with ``ts.Recorder`` holding one ``feature`` series of
``--steps`` steps (default 200) of shape (64 samples, 64 channels, 8, 8),
float32, channel axis 1 -- a conv layer's pre-activations at batch 64 --
i.e. 1 MiB per step, 200 MiB in all, in the store's standard layout (one Zarr
chunk per step). It is read back lazily with ``ts.open_run`` (dask chunks of
about 64 MiB); every arm uses that same DataArray, groups by the default
``by`` (step, channel: 12,800 groups of 4,096 values) and runs under dask's
threaded scheduler (2 cores here).

Arms, interleaved over rounds (median per arm):

* ``read``: every chunk read and discarded (``map_blocks`` to an empty array),
  through ``ts.open_run`` -- which reads uncompressed local chunks straight
  from their files;
* ``read (zarr-python)``: the same, with the same dask chunks, through
  ``dask.array.from_array`` of the zarr-python array (how a plain xarray/zarr
  user reads it);
* ``ts.moments``: ``ts.moments(da).compute()``;
* ``naive xarray``: the composition above.

The store lives in a temporary folder and is deleted at the end; reads come
from the page cache after the warm-up round, for every arm alike.

Run it::

    .venv/bin/python benchmarks/moments.py            # ~1 min
    .venv/bin/python benchmarks/moments.py --quick

Results: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
import scipy.stats
import xarray as xr
import zarr

import tensorstats as ts
from tensorstats.kernels.moments import partial_moments


def write_store(path: Path, steps: int) -> None:
    rng = np.random.default_rng(0)
    with ts.Recorder(path, mode="w-") as rec:
        for step in range(steps):
            x = rng.standard_normal((64, 64, 8, 8), dtype=np.float32)
            x *= np.float32(1 + step / steps)
            rec.record("feature", "conv", x, step=step, channel_axis=1)


def read_all(da: xr.DataArray) -> None:
    empty = da.data.map_blocks(lambda b: np.zeros((0,) * b.ndim, b.dtype),
                               chunks=tuple((0,) * len(c) for c in da.data.chunks))
    dask.compute(empty)


def naive(da: xr.DataArray) -> None:
    pooled = [d for d in da.dims if d not in ("step", "channel")]
    stacked = da.stack(sample=pooled)
    results = [
        da.mean(pooled), da.var(pooled), da.min(pooled), da.max(pooled),
        xr.apply_ufunc(scipy.stats.skew, stacked, input_core_dims=[["sample"]],
                       kwargs={"axis": -1}, dask="parallelized", output_dtypes=[float]),
        xr.apply_ufunc(scipy.stats.kurtosis, stacked, input_core_dims=[["sample"]],
                       kwargs={"axis": -1}, dask="parallelized", output_dtypes=[float]),
    ]
    dask.compute(*results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps, rounds = (40, 2) if args.quick else (args.steps, args.rounds)
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent) as tmp:
        path = Path(tmp) / "run.zarr"
        write_store(path, steps)
        da = ts.open_run(path)["feature", "conv"]
        zarr_array = zarr.open_group(str(path), mode="r")["tensors/feature/conv/tensor"]
        via_zarr = da.copy(data=dask.array.from_array(zarr_array, chunks=da.data.chunks,
                                                      lock=False, asarray=True))
        print(f"tensorstats {ts.__version__}, dask {dask.__version__}; "
              f"{da.nbytes / 2**20:.0f} MiB, dims {dict(da.sizes)}, "
              f"{da.data.npartitions} dask chunks; median of {rounds} interleaved rounds")
        held = np.asarray(zarr_array[:])  # (step, channel, sample, h, w) float32 in memory
        arms = {
            "kernel, 1 thread": lambda: partial_moments(held, axis=(2, 3, 4), threads=1),
            "kernel, 2 threads": lambda: partial_moments(held, axis=(2, 3, 4), threads=2),
            "read": lambda: read_all(da),
            "read (zarr-python)": lambda: read_all(via_zarr),
            "ts.moments": lambda: ts.moments(da).compute(),
            "naive xarray": lambda: naive(da),
        }
        with dask.config.set(scheduler="threads"):
            for fn in arms.values():
                fn()
            times: dict[str, list[float]] = {k: [] for k in arms}
            order = list(arms)
            rng = np.random.default_rng(1)
            for _ in range(rounds):
                rng.shuffle(order)
                for k in order:
                    t0 = time.perf_counter()
                    arms[k]()
                    times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in med.items():
            print(f"  {k:20s} {v * 1e3:8.1f} ms")
        ratio = med["naive xarray"] / med["ts.moments"]
        print(f"  naive / ts.moments = {ratio:.2f}x (target >= 3x)")
        print(f"  ts.moments / read  = {med['ts.moments'] / med['read']:.2f}x (target <= 1.5x)")
        print(f"  ts.moments / read (zarr-python) = "
              f"{med['ts.moments'] / med['read (zarr-python)']:.2f}x")
        print(f"  read (zarr-python) / read = {med['read (zarr-python)'] / med['read']:.2f}x")
        speedup = med["kernel, 1 thread"] / med["kernel, 2 threads"]
        print(f"  kernel in memory: 1 thread / 2 threads = {speedup:.2f}x (target > 1); "
              f"{med['kernel, 1 thread'] * 1e9 / held.size:.2f} ns per value on one thread")


if __name__ == "__main__":
    main()

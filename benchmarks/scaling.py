"""How write time, store size, ``open_run`` time and analysis time grow with a run's size.

Claims (issue 12, section 7): each cost grows about linearly (fitted exponent
b <= ~1) or better along each axis of a run's size, ``open_run`` ideally
sublinearly in steps; and ``ts.open_run`` of a run with 500 tensor series
takes under 2 s.

Three axes, each varied with the other two fixed:

* ``steps``: 10, 30, 100, 300, 1000 steps at 5 layers, 16,384 values per record;
* ``layers``: 5, 20, 50, 200 layers (series of kind ``weight``) at 20 steps,
  16,384 values per record;
* ``size``: 1,024 to 1,048,576 values per record (factor 4 apart) at 5 layers
  x 10 steps.

Every record is a float32 array of shape ``(32, values / 32)`` with the channel
axis first (standard-normal values), written with ``record("weight", ...)``;
every step also records one scalar (``loss``). The measures at each point:

* ``write``: ``ts.Recorder(path, mode="w-")`` (synchronous, default codec),
  every ``record``/``record_scalar`` call and ``close()`` (which consolidates
  the metadata); no ``fsync``; ``os.sync()`` runs after each write, untimed;
* ``disk MB`` and ``files``: allocated bytes (``st_blocks``) and the number of
  files of the store (deterministic: measured once);
* ``open_run``: ``ts.open_run(path)`` (lazy: reads metadata and step labels);
* ``moments`` and ``normality``: from an open run (opened untimed), one
  ``dask.compute`` of ``ts.moments(da)`` -- respectively ``ts.normality(da)``
  -- for every series ``da`` of ``run.items()``, default arguments (groups
  per step and channel; normality subsamples groups above 5000 values),
  dask's threaded scheduler. The time includes building the lazy DataArrays
  and results.

Rounds: the writes are repeated ``--rounds`` times, every point of every axis
in a freshly shuffled order each round (the stores of the last round are
kept). Then, after one untimed warm-up pass that brings every store into the
page cache, ``--rounds`` read rounds each time ``open_run``, ``moments`` and
``normality`` of every point, all (point, measure) pairs shuffled together.
Tables give medians over rounds.

For each measure and axis the script fits ``t = a * x**b`` by least squares
on log-log (all points) and also prints the *tail* exponent between the two
largest points, which shows the asymptotic growth once fixed per-call costs
no longer dominate.

The 500-series check: a run of 100 layers x 5 kinds (``weight``, ``grad``,
``feature``, ``feature_grad``, ``input``) x 10 steps, opened ``--rounds``
times in this process (interleaved with the read rounds) and 3 times in
fresh subprocesses (``open_run`` timed after ``import tensorstats``: what a
user's first call costs, including zarr's lazy imports); PASS when the median
in this process is under 2 s.

Stores go to ``tempfile.mkdtemp`` (``--tmpdir`` to choose where) and are
deleted at the end.

Run it::

    .venv/bin/python benchmarks/scaling.py            # ~3 min on 2 cores
    .venv/bin/python benchmarks/scaling.py --quick    # smoke run, ~1 min

Results: ``docs/benchmarks.md``; what they mean for a large run: ``docs/scaling.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np

import tensorstats as ts

CHANNELS = 32
"""Channels of every recorded tensor (its first axis)."""
OPEN_LIMIT_S = 2.0
"""``open_run`` of the 500-series run must take less than this."""
KINDS_500 = ("weight", "grad", "feature", "feature_grad", "input")
MEASURES = ("write", "disk MB", "files", "open_run", "moments", "normality")
TIMED_READS = ("open_run", "moments", "normality")


@dataclass(frozen=True)
class Point:
    """One store of one axis: ``layers`` series of ``steps`` records of ``values`` values.

    Attributes
    ----------
    axis : str
        ``"steps"``, ``"layers"`` or ``"size"``: which parameter varies.
    steps, layers, values : int
        Steps recorded, series (layers of kind ``weight``) and values per record.
    kinds : tuple of str
        Kinds recorded per layer (each a series).
    """

    axis: str
    steps: int
    layers: int
    values: int
    kinds: tuple[str, ...] = ("weight",)

    @property
    def x(self) -> int:
        """The value of the varied parameter."""
        return {"steps": self.steps, "layers": self.layers, "size": self.values}.get(
            self.axis, self.layers * len(self.kinds))

    @property
    def name(self) -> str:
        """A file-name-safe label."""
        return f"{self.axis}-{self.steps}s-{self.layers}l-{len(self.kinds)}k-{self.values}v"

    @property
    def nbytes(self) -> int:
        """Tensor bytes recorded (float32)."""
        return self.steps * self.layers * len(self.kinds) * self.values * 4


@dataclass
class Result:
    """Raw timings and sizes of one :class:`Point`."""

    times: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MEASURES})
    disk: tuple[int, int] = (0, 0)
    """(files, allocated bytes) of the store, measured after the first write."""

    def median(self, measure: str) -> float:
        """Median seconds of a timed measure; MB or file count for the sizes."""
        if measure == "disk MB":
            return self.disk[1] / 1e6
        if measure == "files":
            return float(self.disk[0])
        return statistics.median(self.times[measure])


# ---------------------------------------------------------------- the work
def make_values(values: int, layers: int, seed: int) -> list[np.ndarray]:
    """A few distinct ``(CHANNELS, values // CHANNELS)`` float32 arrays, cycled over layers."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((CHANNELS, values // CHANNELS), dtype=np.float32)
            for _ in range(min(layers, 4))]


def write_store(path: Path, point: Point, arrays: list[np.ndarray]) -> float:
    """Write ``point``'s store with a synchronous Recorder; return seconds (no fsync).

    Parameters
    ----------
    path : Path
        Where the store goes (must not exist).
    point : Point
        What to write.
    arrays : list of ndarray
        The tensors, cycled over series.

    Returns
    -------
    float
        Seconds for ``Recorder(...)``, every record call and ``close()``.
    """
    names = [f"layer{i:04d}" for i in range(point.layers)]
    t0 = time.perf_counter()
    rec = ts.Recorder(path, mode="w-")
    for step in range(point.steps):
        for kind in point.kinds:
            for i, layer in enumerate(names):
                rec.record(kind, layer, arrays[i % len(arrays)], step=step, channel_axis=0)
        rec.record_scalar("loss", 1.0 / (step + 1), step=step)
    rec.close()
    return time.perf_counter() - t0


def analyse(run: ts.Run, analysis: Callable[..., object]) -> None:
    """One ``dask.compute`` of ``analysis(da)`` for every tensor series of ``run``."""
    dask.compute(*[analysis(da) for _, da in run.items()])


def disk_usage(path: Path) -> tuple[int, int]:
    """Number of files and allocated bytes (``st_blocks``) under ``path``."""
    files = allocated = 0
    for root, _, names in os.walk(path):
        for n in names:
            files += 1
            allocated += os.stat(os.path.join(root, n)).st_blocks * 512
    return files, allocated


def open_in_subprocess(path: Path) -> float:
    """Seconds of ``ts.open_run(path)`` in a fresh interpreter, after ``import tensorstats``."""
    code = ("import sys, time, tensorstats as ts\n"
            "t0 = time.perf_counter(); ts.open_run(sys.argv[1]); "
            "print(time.perf_counter() - t0)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                         capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- fitting
def fit_exponent(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares exponent ``b`` of ``y = a * x**b`` on log-log, and the tail exponent.

    Parameters
    ----------
    xs, ys : list of float
        The points (positive), ``xs`` increasing.

    Returns
    -------
    b, tail : float
        ``b`` over all points; ``tail`` from the two largest ``xs`` only.

    Examples
    --------
    >>> b, tail = fit_exponent([1, 10, 100], [2, 20, 200])
    >>> round(b, 6), round(tail, 6)
    (1.0, 1.0)
    """
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    b = float(np.polyfit(lx, ly, 1)[0])
    tail = float((ly[-1] - ly[-2]) / (lx[-1] - lx[-2]))
    return b, tail


# ---------------------------------------------------------------- reporting
def _fmt(measure: str, v: float) -> str:
    if measure == "files":
        return f"{v:>9.0f}"
    if measure == "disk MB":
        return f"{v:>9.1f}"
    if measure == "write":
        return f"{v:>8.3f} s"
    return f"{v * 1e3:>7.1f} ms"


def print_axis(axis: str, points: list[Point], results: dict[Point, Result]) -> None:
    """The raw medians of one axis, one row per point."""
    label = {"steps": "steps", "layers": "layers", "size": "values/rec"}[axis]
    head = f"{label:>11} {'series':>6} {'MB data':>8} " + " ".join(f"{m:>10}" for m in MEASURES)
    print(head)
    print("-" * len(head))
    for p in points:
        r = results[p]
        print(f"{p.x:>11,} {p.layers * len(p.kinds):>6} {p.nbytes / 1e6:>8.1f} "
              + " ".join(f"{_fmt(m, r.median(m)):>10}" for m in MEASURES))


def print_exponents(axes: dict[str, list[Point]], results: dict[Point, Result]) -> list[str]:
    """Print the table measure x axis -> fitted exponent (and tail exponent).

    Returns
    -------
    list of str
        ``"measure/axis"`` of every cell whose tail exponent exceeds 1.15.
    """
    worse = []
    names = list(axes)
    head = f"{'measure':<10} " + " ".join(f"{a + ' b (tail)':>17}" for a in names)
    print(head)
    print("-" * len(head))
    for m in MEASURES:
        cells = []
        for a in names:
            pts = axes[a]
            b, tail = fit_exponent([p.x for p in pts], [results[p].median(m) for p in pts])
            cells.append(f"{b:>9.2f} ({tail:>5.2f})")
            if tail > 1.15:
                worse.append(f"{m}/{a} ({tail:.2f})")
        print(f"{m:<10} " + " ".join(f"{c:>17}" for c in cells))
    return worse


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 0 if the 500-series ``open_run`` check passes, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5,
                        help="write rounds and read rounds (median reported; default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: fewer, smaller points, 3 rounds")
    parser.add_argument("--tmpdir", type=Path, default=None,
                        help="where the stores go (default: the system temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    if args.quick:
        args.rounds = min(args.rounds, 3)
        steps_axis, layers_axis = [10, 30, 100, 300], [5, 20, 50, 100]
        sizes = [2**k for k in range(10, 19, 2)]
        big = Point("series500", 3, 100, 2**10, KINDS_500)
    else:
        steps_axis, layers_axis = [10, 30, 100, 300, 1000], [5, 20, 50, 200]
        sizes = [2**k for k in range(10, 21, 2)]
        big = Point("series500", 10, 100, 2**14, KINDS_500)
    axes = {
        "steps": [Point("steps", s, 5, 2**14) for s in steps_axis],
        "layers": [Point("layers", 20, n, 2**14) for n in layers_axis],
        "size": [Point("size", 10, 5, v) for v in sizes],
    }
    points = [p for pts in axes.values() for p in pts]
    results = {p: Result() for p in [*points, big]}
    arrays = {v: make_values(v, 4, args.seed) for v in {p.values for p in results}}

    print("tensorstats scaling benchmark")
    print(f"tensorstats {ts.__version__}, numpy {np.__version__}, dask {dask.__version__}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f}; OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', '(unset)')}")
    print(f"records: float32 ({CHANNELS}, values/{CHANNELS}), channel axis 0, kind 'weight'; "
          "one scalar per step; synchronous Recorder, default codec")
    print(f"{args.rounds} write rounds, then 1 untimed warm-up read pass and {args.rounds} read "
          "rounds; all points (and measures) shuffled together each round; medians; "
          "dask threaded scheduler")
    sys.stdout.flush()

    base = Path(tempfile.mkdtemp(prefix="tensorstats-scaling-", dir=args.tmpdir))
    stores = {p: base / f"{p.name}.zarr" for p in results}
    rng = random.Random(args.seed)
    t_start = time.perf_counter()
    try:
        # ---- writes (the 500-series store once, outside the fits)
        write_store(base / "warmup.zarr", Point("warmup", 2, 2, 2**10), make_values(2**10, 2, 0))
        shutil.rmtree(base / "warmup.zarr")
        results[big].times["write"].append(write_store(stores[big], big, arrays[big.values]))
        results[big].disk = disk_usage(stores[big])
        order = list(points)
        for r in range(args.rounds):
            rng.shuffle(order)
            for p in order:
                path = base / f"{p.name}.r{r}.zarr"
                results[p].times["write"].append(write_store(path, p, arrays[p.values]))
                if r == 0:
                    results[p].disk = disk_usage(path)
                if r == args.rounds - 1:
                    path.rename(stores[p])
                else:
                    shutil.rmtree(path)
                os.sync()
            print(f"write round {r + 1}/{args.rounds} done "
                  f"({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)

        # ---- reads
        arms: dict[str, Callable[[Path], object]] = {
            "open_run": ts.open_run,
            "moments": lambda path: analyse(ts.open_run(path), ts.moments),
            "normality": lambda path: analyse(ts.open_run(path), ts.normality),
        }
        with dask.config.set(scheduler="threads"):
            for p in points:  # warm-up: page cache, imports, compiled kernels
                for fn in arms.values():
                    fn(stores[p])
            ts.open_run(stores[big])
            tasks = [(p, m) for p in points for m in TIMED_READS] + [(big, "open_run")]
            for r in range(args.rounds):
                rng.shuffle(tasks)
                for p, m in tasks:
                    if m == "open_run":
                        t0 = time.perf_counter()
                        ts.open_run(stores[p])
                        results[p].times[m].append(time.perf_counter() - t0)
                        continue
                    run = ts.open_run(stores[p])
                    analysis = ts.moments if m == "moments" else ts.normality
                    t0 = time.perf_counter()
                    analyse(run, analysis)
                    results[p].times[m].append(time.perf_counter() - t0)
                print(f"read round {r + 1}/{args.rounds} done "
                      f"({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)
        fresh = [open_in_subprocess(stores[big]) for _ in range(3)]
    finally:
        shutil.rmtree(base, ignore_errors=True)

    # ---- report
    for axis, pts in axes.items():
        fixed = {"steps": "5 layers, 16,384 values/record",
                 "layers": "20 steps, 16,384 values/record",
                 "size": "5 layers x 10 steps"}[axis]
        print(f"\n## axis {axis} ({fixed}); medians of {args.rounds} rounds")
        print_axis(axis, pts, results)
        spread = {m: statistics.median((max(t) - min(t)) / statistics.median(t)
                                       for t in (results[p].times[m] for p in pts))
                  for m in ("write", *TIMED_READS)}
        print("  round-to-round spread, (max - min) / median, median over points: "
              + ", ".join(f"{m} {v:.0%}" for m, v in spread.items()))
    print("\n## exponents b of t = a * x^b (least squares on log-log over all points; "
          "in parentheses: between the two largest points)")
    worse = print_exponents(axes, results)
    print("worse than linear (tail exponent > 1.15): "
          + (", ".join(worse) if worse else "none"))

    steps_last = axes["steps"][-1]
    r = results[steps_last]
    n_values = steps_last.nbytes / 4
    n_records = steps_last.steps * steps_last.layers
    print(f"\nper unit at {steps_last.steps} steps x {steps_last.layers} layers: write "
          f"{r.median('write') / n_records * 1e6:.0f} us/record, "
          f"moments {r.median('moments') / n_values * 1e9:.2f} ns/value, "
          f"normality {r.median('normality') / n_values * 1e9:.2f} ns/value (2 threads)")
    layers_last = axes["layers"][-1]
    r = results[layers_last]
    print(f"per series at {layers_last.layers} layers: open_run "
          f"{r.median('open_run') / layers_last.layers * 1e3:.2f} ms, moments "
          f"{r.median('moments') / layers_last.layers * 1e3:.2f} ms, normality "
          f"{r.median('normality') / layers_last.layers * 1e3:.2f} ms")

    rb = results[big]
    med = rb.median("open_run")
    ok = med < OPEN_LIMIT_S
    print(f"\n## open_run of {big.layers * len(big.kinds)} series ({big.layers} layers x "
          f"{len(big.kinds)} kinds x {big.steps} steps, {rb.disk[0]} files, "
          f"{rb.disk[1] / 1e6:.0f} MB; written in {rb.times['write'][0]:.2f} s)")
    print(f"  this process: median {med:.3f} s, min-max "
          f"{min(rb.times['open_run']):.3f}-{max(rb.times['open_run']):.3f} s "
          f"({len(rb.times['open_run'])} rounds)")
    print("  fresh process (after import tensorstats): "
          + " ".join(f"{t:.3f}" for t in fresh) + " s")
    print(f"  target < {OPEN_LIMIT_S:.0f} s: {'PASS' if ok else 'FAIL'}")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

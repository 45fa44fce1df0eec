"""What the compiled kernels cost the first call of a process: numba's import and compilation.

Claim (issue 13): ``tensorstats info`` and ``ts.moments`` on a small run, in
a fresh process with numba's on-disk cache warm, take at most 1.5 s longer
than the same without numba kernels; the cold-cache figure is reported too.

Arms, each a fresh Python process, interleaved over rounds (median per arm):

* ``info, warm cache``: ``tensorstats info RUN`` (its findings read every
  series' moments) with numba's cache filled by an earlier process;
* ``info, cold cache``: the same with ``NUMBA_CACHE_DIR`` pointed at a new
  empty folder every round (numba looks there first), so every kernel compiles;
* ``info, no numba``: the same with the moments kernel replaced, before the
  command runs, by a NumPy two-pass equivalent that never imports numba --
  the "without numba kernels" peer;
* the same three for a script calling ``ts.moments(...).compute()`` on every
  series of the run.

The run: a small CNN-like store written with ``ts.Recorder`` (3 layers x 4
kinds x 20 steps, a few MiB), in a temporary folder.

Run it::

    .venv/bin/python benchmarks/first_call.py            # ~1 min
    .venv/bin/python benchmarks/first_call.py --rounds 3

Results: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tensorstats as ts

NO_NUMBA = '''
import numpy as np
from tensorstats.kernels import moments as m

def numpy_partials(x, nkept, threads):  # two-pass NumPy moments: the peer without numba
    lead = x.shape[:nkept]
    v = x.reshape(*lead, -1).astype(np.float64)
    ok = np.isfinite(v)
    n = ok.sum(-1)
    z = np.where(ok, v, 0.0)
    mean = np.divide(z.sum(-1), n, out=np.zeros(lead), where=n > 0)
    d = np.where(ok, v - mean[..., None], 0.0)
    d2 = d * d
    return {"count": n, "nan_count": np.isnan(v).sum(-1), "inf_count": np.isinf(v).sum(-1),
            "mean": mean, "m2": d2.sum(-1), "m3": (d2 * d).sum(-1), "m4": (d2 * d2).sum(-1),
            "min": np.where(ok, v, np.inf).min(-1), "max": np.where(ok, v, -np.inf).max(-1)}

m._kernel_partials = numpy_partials
'''

MOMENTS = '''
import tensorstats as ts
run = ts.open_run({run!r})
for kind in run.kinds:
    for layer in run.layers(kind):
        ts.moments(run[kind, layer]).compute()
'''

INFO = '''
import sys
from tensorstats.cli import main
sys.argv = ["tensorstats", "info", {run!r}]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
'''


def write_run(path: Path) -> None:
    rng = np.random.default_rng(0)
    shapes = {"conv1": (32, 8, 14, 14), "conv2": (32, 16, 7, 7), "fc": (32, 10)}
    with ts.Recorder(path, mode="w-") as rec:
        for step in range(20):
            for layer, shape in shapes.items():
                for kind in ("weight", "grad", "feature", "feature_grad"):
                    x = rng.standard_normal(shape[1:] if kind in ("weight", "grad") else shape,
                                            dtype=np.float32)
                    axis = 0 if kind in ("weight", "grad") else 1
                    rec.record(kind, layer, x, step=step, channel_axis=axis)
            rec.record_scalar("loss", 1.0 / (step + 1), step=step)


def timed(code: str, env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ts-first-call-"))
    try:
        run = str(tmp / "run.zarr")
        write_run(Path(run))
        warm_dir = tmp / "numba-warm"
        base = {**os.environ, "NUMBA_CACHE_DIR": str(warm_dir)}
        arms = {}
        for what, body in (("info", INFO), ("ts.moments", MOMENTS)):
            code = body.format(run=run)
            arms[f"{what}, warm cache"] = (code, "warm")
            arms[f"{what}, cold cache"] = (code, "cold")
            arms[f"{what}, no numba"] = (NO_NUMBA + code, "warm")
        for code, _ in arms.values():  # fill the warm cache; page in the files
            timed(code, base)
        times: dict[str, list[float]] = {name: [] for name in arms}
        for _ in range(args.rounds):
            for name, (code, cache) in arms.items():
                env = base
                if cache == "cold":
                    cold = Path(tempfile.mkdtemp(prefix="numba-cold-", dir=tmp))  # new, empty
                    # NUMBA_CACHE_DIR comes first among numba's cache locators
                    env = {**base, "NUMBA_CACHE_DIR": str(cold)}
                times[name].append(timed(code, env))
        med = {name: statistics.median(v) for name, v in times.items()}
        print(f"tensorstats {ts.__version__}; median of {args.rounds} interleaved rounds, "
              "fresh process each")
        for name, value in med.items():
            print(f"  {name:28s} {value:6.2f} s")
        for what in ("info", "ts.moments"):
            extra = med[f"{what}, warm cache"] - med[f"{what}, no numba"]
            cold = med[f"{what}, cold cache"] - med[f"{what}, no numba"]
            verdict = "met" if extra <= 1.5 else "NOT met"
            print(f"  {what}: warm cache +{extra:.2f} s over no numba (target <= 1.5 s: "
                  f"{verdict}); cold cache +{cold:.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

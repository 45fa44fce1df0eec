"""Write throughput of ``tensorstats.Recorder`` against plain ``numpy.save``.

What it measures
----------------
The tensors of one logged step of a small CNN (the seed paper's model) at batch
64 on 3x32x32 inputs::

    conv1 3->16 k3 p1 -> ReLU -> maxpool 2 -> conv2 16->16 k3 p1 -> ReLU -> maxpool 2
    -> conv3 16->16 k3 p1 -> ReLU -> flatten (1024) -> fc1 1024->512 -> ReLU -> fc2 512->10

For each layer: its weight and bias (kind ``"weight"``), their gradients (kind
``"grad"``) and its pre-activation output (kind ``"feature"``, channel axis 1),
all float32, 9.92 MB per step. The values come from a real forward and
backward pass in NumPy (Kaiming-normal weights, standard-normal inputs, a
cross-entropy loss on random labels, fixed seed), so features and gradients
have the value distributions -- and the exact zeros of dead ReLU units in the
gradients -- that compression sees in practice. Random-looking float32 data
compresses poorly; that is the honest case.

Arms (every arm writes the same tensors for the same ``--steps`` steps):

* ``numpy.save``: the peer -- one ``.npy`` file per tensor per step in a fresh
  folder (folder creation and every file's creation included in the time);
* ``Recorder`` with the default codec (``codec`` not passed), and with
  ``codec="none"``, ``"lz4"`` (Blosc LZ4 + bit-shuffle) and ``"zstd"``
  explicitly. The time covers ``Recorder(...)``, every ``record()`` call and
  ``close()`` (which consolidates the store's metadata).

A second, *small-tensor* scenario writes only the weights, biases and their
gradients (no features): 20 ``record()`` calls per step, 18 of them for
tensors of at most 20 KiB, which stresses the per-call overhead (metadata JSON
rewrites, atomic renames) rather than bandwidth.

The headline ratio is *paired*: in one loop, each step's tensors are written
with ``numpy.save`` and with the Recorder (default codec) back to back, in an
order that alternates from step to step, and each side's time is summed. Both
sides thus see the same page-cache and writeback state, which on this machine
swings whole runs by 2-5x; the ratio is the median over rounds of
``numpy.save time / Recorder time``.

For the codec table, rounds are interleaved: each round runs every arm once, in a freshly shuffled
order, and the table reports the median over rounds. Throughput is
``uncompressed tensor bytes / median seconds`` in MB/s (1 MB = 10**6 bytes).
Neither arm calls ``fsync``. ``numpy.save`` writes through the OS page cache;
the Recorder writes chunks of 256 KiB and more with ``O_DIRECT`` where the file
system allows it (ext4 here; not tmpfs), so its large writes wait for the
device but cost almost no CPU. Between runs (outside
the timed region) the output is measured, deleted and ``os.sync()`` is called
so one run's dirty pages do not slow the next.

Run it
------
::

    .venv/bin/python benchmarks/write_throughput.py             # full: ~70 s on 2 cores
    .venv/bin/python benchmarks/write_throughput.py --quick     # smoke run, a few seconds
    .venv/bin/python benchmarks/write_throughput.py --steps 50 --rounds 7 --tmpdir /data/tmp

Results and their discussion: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import tensorstats
from tensorstats import Recorder

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CODEC = inspect.signature(Recorder).parameters["codec"].default
TARGET_RATIO = 0.5

Tensor = tuple[str, str, np.ndarray, int]
"""(kind, layer, array, channel_axis) -- one record() call per step."""


# --------------------------------------------------------------------- the tensors
def _im2col(x: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B*H*W, C*9) patches of a 3x3 convolution with padding 1."""
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # B,C,H,W,3,3
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(b * h * w, c * 9)


def _col2im(cols: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Adjoint of :func:`_im2col`: scatter-add patch gradients back to the input."""
    b, c, h, w = shape
    g = cols.reshape(b, h, w, c, 3, 3).transpose(0, 3, 1, 2, 4, 5)
    out = np.zeros((b, c, h + 2, w + 2), dtype=cols.dtype)
    for i in range(3):
        for j in range(3):
            out[:, :, i:i + h, j:j + w] += g[..., i, j]
    return out[:, :, 1:-1, 1:-1]


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cols = _im2col(x)
    n, _, h, wd = x.shape
    z = cols @ w.reshape(w.shape[0], -1).T + b
    return z.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols


def _conv_backward(dz: np.ndarray, cols: np.ndarray, w: np.ndarray,
                   x_shape: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    dzf = dz.transpose(0, 2, 3, 1).reshape(-1, w.shape[0])
    dw = (dzf.T @ cols).reshape(w.shape)
    db = dzf.sum(axis=0)
    dx = _col2im(dzf @ w.reshape(w.shape[0], -1), x_shape)
    return dw, db, dx


def _pool(a: np.ndarray) -> np.ndarray:
    n, c, h, w = a.shape
    return a.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _pool_backward(dp: np.ndarray, a: np.ndarray, p: np.ndarray) -> np.ndarray:
    up = p.repeat(2, axis=2).repeat(2, axis=3)
    return (a == up) * dp.repeat(2, axis=2).repeat(2, axis=3)


def make_tensors(batch: int, seed: int) -> list[Tensor]:
    """Weights, biases, their gradients and the pre-activations of one training step."""
    rng = np.random.default_rng(seed)
    f32 = np.float32

    def weight(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        fan_in = int(np.prod(shape[1:]))
        w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape).astype(f32)
        bound = 1.0 / np.sqrt(fan_in)
        return w, rng.uniform(-bound, bound, size=shape[0]).astype(f32)

    w1, b1 = weight((16, 3, 3, 3))
    w2, b2 = weight((16, 16, 3, 3))
    w3, b3 = weight((16, 16, 3, 3))
    w4, b4 = weight((512, 1024))
    w5, b5 = weight((10, 512))
    x = rng.standard_normal((batch, 3, 32, 32), dtype=f32)
    labels = rng.integers(0, 10, size=batch)

    z1, c1 = _conv(x, w1, b1)
    a1 = np.maximum(z1, 0)
    p1 = _pool(a1)
    z2, c2 = _conv(p1, w2, b2)
    a2 = np.maximum(z2, 0)
    p2 = _pool(a2)
    z3, c3 = _conv(p2, w3, b3)
    h3 = np.maximum(z3, 0).reshape(batch, -1)
    z4 = h3 @ w4.T + b4
    a4 = np.maximum(z4, 0)
    z5 = a4 @ w5.T + b5

    e = np.exp(z5 - z5.max(axis=1, keepdims=True))
    dz5 = e / e.sum(axis=1, keepdims=True)
    dz5[np.arange(batch), labels] -= 1
    dz5 /= batch
    dw5, db5 = dz5.T @ a4, dz5.sum(axis=0)
    dz4 = (dz5 @ w5) * (z4 > 0)
    dw4, db4 = dz4.T @ h3, dz4.sum(axis=0)
    dz3 = (dz4 @ w4).reshape(z3.shape) * (z3 > 0)
    dw3, db3, dp2 = _conv_backward(dz3, c3, w3, p2.shape)
    dz2 = _pool_backward(dp2, a2, p2) * (z2 > 0)
    dw2, db2, dp1 = _conv_backward(dz2, c2, w2, p1.shape)
    dz1 = _pool_backward(dp1, a1, p1) * (z1 > 0)
    dw1, db1, _ = _conv_backward(dz1, c1, w1, x.shape)

    out: list[Tensor] = []
    params = {"conv1": (w1, b1, dw1, db1), "conv2": (w2, b2, dw2, db2),
              "conv3": (w3, b3, dw3, db3), "fc1": (w4, b4, dw4, db4), "fc2": (w5, b5, dw5, db5)}
    for name, (w, b, dw, db) in params.items():
        out += [("weight", f"{name}.weight", w, 0), ("weight", f"{name}.bias", b, 0),
                ("grad", f"{name}.weight", dw, 0), ("grad", f"{name}.bias", db, 0)]
    feats = {"conv1": z1, "conv2": z2, "conv3": z3, "fc1": z4, "fc2": z5}
    out += [("feature", name, z, 1) for name, z in feats.items()]
    out = [(k, layer, np.ascontiguousarray(a, dtype=f32), ax) for k, layer, a, ax in out]
    for _, _, a, _ in out:
        assert np.isfinite(a).all()
    return out


# ------------------------------------------------------------------------- the arms
def write_npsave(path: Path, tensors: list[Tensor], steps: int) -> float:
    """One ``.npy`` per tensor per step; returns seconds (no fsync)."""
    files = [f"{kind}.{layer}" for kind, layer, _, _ in tensors]
    t0 = time.perf_counter()
    os.mkdir(path)
    for step in range(steps):
        for name, (_, _, arr, _) in zip(files, tensors, strict=True):
            np.save(path / f"{name}.{step:06d}.npy", arr)
    return time.perf_counter() - t0


def write_recorder(path: Path, tensors: list[Tensor], steps: int, codec: str | None,
                   close_times: list[float]) -> float:
    """Recorder(...), every record() and close(); returns seconds (no fsync)."""
    kwargs = {} if codec is None else {"codec": codec}
    t0 = time.perf_counter()
    rec = Recorder(path, mode="w-", **kwargs)
    for step in range(steps):
        for kind, layer, arr, ax in tensors:
            rec.record(kind, layer, arr, step=step, channel_axis=ax)
    t1 = time.perf_counter()
    rec.close()
    t2 = time.perf_counter()
    close_times.append(t2 - t1)
    return t2 - t0


@dataclass
class Arm:
    name: str
    scenario: str
    tensors: list[Tensor]
    codec: str | None = None
    """None: numpy.save; "default": Recorder without codec=; else the codec."""
    times: list[float] = field(default_factory=list)
    close_times: list[float] = field(default_factory=list)
    disk: tuple[int, int, int] = (0, 0, 0)
    """(files, apparent bytes, allocated bytes) of the first run's output."""

    @property
    def payload_per_step(self) -> int:
        return sum(a.nbytes for _, _, a, _ in self.tensors)

    def run(self, path: Path, steps: int) -> float:
        if self.codec is None:
            return write_npsave(path, self.tensors, steps)
        codec = None if self.codec == "default" else self.codec
        return write_recorder(path, self.tensors, steps, codec, self.close_times)


def disk_usage(path: Path) -> tuple[int, int, int]:
    """Files, apparent size and allocated size (st_blocks) of everything under ``path``."""
    files = apparent = allocated = 0
    for root, _, names in os.walk(path):
        for n in names:
            st = os.stat(os.path.join(root, n))
            files += 1
            apparent += st.st_size
            allocated += st.st_blocks * 512
    return files, apparent, allocated


# ------------------------------------------------------------------------ reporting
def _fmt_mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def paired_ratio(base: Path, tensors: list[Tensor], steps: int, rounds: int) -> list[float]:
    """Per round: numpy.save seconds / Recorder seconds, the two interleaved per step."""
    ratios = []
    for r in range(rounds):
        npy, store = base / f"paired-{r}-npy", base / f"paired-{r}.zarr"
        files = [f"{kind}.{layer}" for kind, layer, _, _ in tensors]
        t0 = time.perf_counter()
        os.mkdir(npy)
        t_np = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec = Recorder(store, mode="w-")
        t_rec = time.perf_counter() - t0
        for step in range(steps):
            for side in ((0, 1) if step % 2 == 0 else (1, 0)):
                t0 = time.perf_counter()
                if side == 0:
                    for name, (_, _, arr, _) in zip(files, tensors, strict=True):
                        np.save(npy / f"{name}.{step:06d}.npy", arr)
                    t_np += time.perf_counter() - t0
                else:
                    for kind, layer, arr, ax in tensors:
                        rec.record(kind, layer, arr, step=step, channel_axis=ax)
                    t_rec += time.perf_counter() - t0
        t0 = time.perf_counter()
        rec.close()
        t_rec += time.perf_counter() - t0
        ratios.append(t_np / t_rec)
        shutil.rmtree(npy)
        shutil.rmtree(store)
        os.sync()
    return ratios


def report(arms: list[Arm], steps: int) -> dict[str, float]:
    """Print one table per scenario; return each arm's ratio vs numpy.save."""
    ratios: dict[str, float] = {}
    for scenario in dict.fromkeys(a.scenario for a in arms):
        group = [a for a in arms if a.scenario == scenario]
        peer = next(a for a in group if a.codec is None)
        payload = peer.payload_per_step * steps
        n_tensors = len(peer.tensors)
        print(f"\n## {scenario}: {n_tensors} tensors/step x {steps} steps = "
              f"{_fmt_mb(payload)} MB uncompressed per run")
        header = (f"{'arm':<34} {'median s':>8} {'min-max s':>13} {'close s':>7} "
                  f"{'us/call':>7} {'MB/s':>6} {'vs np.save':>10} {'files':>6} {'disk MB':>8} "
                  f"{'alloc MB':>8} {'compr.':>6}")
        print(header)
        print("-" * len(header))
        peer_rate = payload / statistics.median(peer.times)
        for a in group:
            med = statistics.median(a.times)
            rate = payload / med
            ratio = rate / peer_rate
            ratios[a.name] = ratio
            close = f"{statistics.median(a.close_times):.3f}" if a.close_times else "-"
            files, apparent, allocated = a.disk
            per_call = med / (n_tensors * steps) * 1e6
            print(f"{a.name:<34} {med:>8.3f} {min(a.times):>6.3f}-{max(a.times):<6.3f} "
                  f"{close:>7} {per_call:>7.0f} {rate / 1e6:>6.0f} {ratio:>9.2f}x {files:>6} "
                  f"{_fmt_mb(apparent):>8} {_fmt_mb(allocated):>8} {payload / apparent:>5.2f}x")
    return ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30, help="steps written per run (default 30)")
    p.add_argument("--rounds", type=int, default=7,
                   help="interleaved rounds; the median is reported (default 7)")
    p.add_argument("--batch", type=int, default=64, help="batch size of the features (64)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: batch 4, 3 steps, 2 rounds (numbers meaningless)")
    p.add_argument("--tmpdir", type=Path, default=None,
                   help="where the outputs go (default: the system temp dir)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.rounds = 4, 3, 2
    if args.steps < 1 or args.rounds < 1 or args.batch < 1:
        p.error("--steps, --rounds and --batch must be positive")

    tensors = make_tensors(args.batch, args.seed)
    small = [t for t in tensors if t[0] != "feature"]
    scen_full = f"Full step (weights, grads, features; batch {args.batch})"
    scen_small = "Small tensors (weights, biases, grads only; per-record overhead)"
    arms = [
        Arm("numpy.save", scen_full, tensors),
        Arm(f"Recorder default ({DEFAULT_CODEC})", scen_full, tensors, "default"),
        Arm("Recorder codec=none", scen_full, tensors, "none"),
        Arm("Recorder codec=lz4", scen_full, tensors, "lz4"),
        Arm("Recorder codec=zstd", scen_full, tensors, "zstd"),
        Arm("numpy.save (small)", scen_small, small),
        Arm(f"Recorder default ({DEFAULT_CODEC}) (small)", scen_small, small, "default"),
    ]

    base = Path(tempfile.mkdtemp(prefix="tensorstats-bench-", dir=args.tmpdir))
    same_fs = os.stat(base).st_dev == os.stat(REPO).st_dev
    print("tensorstats write-throughput benchmark", flush=True)
    print(f"tensorstats {tensorstats.__version__}, numpy {np.__version__}, "
          f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print(f"output folder: {base} (tempfile.mkdtemp; "
          f"{'same' if same_fs else 'NOT the same'} filesystem as the repo {REPO})")
    print(f"steps={args.steps} rounds={args.rounds} batch={args.batch} seed={args.seed}; "
          "arms interleaved in a shuffled order each round; median over rounds")
    print("no fsync in any arm; numpy.save writes through the page cache, the Recorder writes "
          "chunks >= 256 KiB with O_DIRECT where the file system allows it (outputs are "
          "deleted and os.sync() runs between runs, untimed)")
    print(f"{sum(a.nbytes for _, _, a, _ in tensors) / 1e6:.2f} MB of float32 per step, from a "
          "NumPy forward/backward pass (fixed seed)")
    print("time: numpy.save = mkdir + np.save of every file; Recorder = Recorder(...) + "
          "record() calls + close() (consolidation)")

    sys.stdout.flush()
    order = list(range(len(arms)))
    rng = random.Random(args.seed)
    try:
        # Warm-up: imports, codec set-up and first-touch costs, untimed.
        for i, arm in enumerate(arms):
            arm.run(base / f"warmup-{i}", 1)
            arm.close_times.clear()
        shutil.rmtree(base)
        base.mkdir()
        for r in range(args.rounds):
            rng.shuffle(order)
            for i in order:
                arm = arms[i]
                out = base / f"r{r}-a{i}"
                arm.times.append(arm.run(out, args.steps))
                if r == 0:
                    arm.disk = disk_usage(out)
                shutil.rmtree(out)
                os.sync()
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    ratios = report(arms, args.steps)
    print("\nMB/s = uncompressed tensor bytes / median time (1 MB = 1e6 B); 'vs np.save' = "
          "MB/s of the arm / MB/s of numpy.save; min-max over rounds;")
    print("us/call = median time / (tensors x steps): per np.save() or per record() call, "
          "set-up and close() included;")
    print("disk MB = apparent size of all files (metadata included), alloc MB = blocks "
          "allocated; compr. = uncompressed tensor bytes / disk MB")
    print()
    paired = paired_ratio(Path(tempfile.mkdtemp(prefix="tensorstats-bench-", dir=args.tmpdir)),
                          tensors, args.steps, args.rounds)
    print("paired rounds (numpy.save time / Recorder time, same loop): "
          + " ".join(f"{x:.2f}" for x in paired))
    full = ratios[arms[1].name]
    small_ratio = ratios[arms[6].name]
    print(f"Small tensors only (weights/biases/grads): Recorder (default codec) / numpy.save "
          f"throughput ratio: {small_ratio:.2f}x")
    print(f"Recorder (default codec) / numpy.save throughput ratio, separate runs: {full:.2f}x")
    print(f"Recorder (default codec) / numpy.save throughput ratio, paired (headline): "
          f"{statistics.median(paired):.2f}x (target >= {TARGET_RATIO}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training-step overhead of ``tensorstats.torch.watch`` against TensorBoard histograms.

What it measures
----------------
The seed paper's CNN is trained with Adam (lr 1e-4) for ``--steps`` steps (default
200) at batch 64 on 3x32x32 inputs::

    conv1 3->16 k3 p1 -> ReLU -> maxpool 2 -> conv2 16->16 k3 p1 -> ReLU -> maxpool 2
    -> conv3 16->16 k3 p1 -> ReLU -> flatten (1024) -> fc1 1024->512 -> ReLU -> fc2 512->10

The data are synthetic: 10 batches of standard-normal inputs and labels uniform
in 0..9, made once with a fixed seed and kept in memory; step ``s`` uses batch
``s % 10``. Each arm rebuilds the model and the optimizer from the same seed
(outside the timed region), so every arm does the same arithmetic; the final
loss of every arm is printed as a check that logging did not change training.

Arms:

* ``none``: training only (the loop still calls ``loss.item()`` every step, as
  every other arm does);
* ``watch-all``: ``watch(model, rec, every=10, kinds=("weight", "grad",
  "feature", "feature_grad"))`` into a fresh store, ``w.step(step,
  loss=loss.item())`` every step;
* ``watch-wg``: the same with ``kinds=("weight", "grad")``;
* ``summaries``: ``watch(..., kinds=<the four>, every=[], summaries="moments")``:
  no raw tensors, exact per-channel moments of all four kinds at every step
  (issue 13's target: at most +5% on saturated cores);
* ``wandb`` (issue 13's peer): W&B's ``wandb.watch(model, log="all",
  log_freq=10)`` in offline mode (``wandb`` package, no account, no network;
  its ``wandb-core`` service process's CPU is part of the cost), histograms
  of every parameter and gradient, ``run.log({"loss": ...})`` every step;
* ``tensorboard`` (the peer): ``torch.utils.tensorboard.SummaryWriter``, every
  10 steps ``add_histogram`` of every parameter and of its gradient, and
  ``add_scalar("loss", ...)`` every step. It stores 64-bin histograms of
  parameters only, not every element, and no features. Its histograms call
  ``np.dot``, which wakes NumPy's OpenBLAS threads; they spin on the cores
  torch's threads use, and that contention is most of this arm's cost.
  ``OPENBLAS_NUM_THREADS=1`` in the environment removes it.

The timed region of a logging arm covers creating the ``Recorder`` (or the
``SummaryWriter``), ``watch()``, the training loop, ``w.remove()`` and
``rec.close()`` (or ``writer.close()``); closing waits for the background
writer, so no write is left out. Outputs go to ``tempfile.mkdtemp()`` (the
same filesystem as the repo on the dev machine); between runs, untimed, they
are deleted and ``os.sync()`` is called. ``torch.set_num_threads(2)``.

One warm-up run of every arm (a few steps, untimed) comes first. Then
``--rounds`` rounds (default 5) each run every arm once, in an order rotated by
one arm per round. Per arm the table gives the median over rounds of the mean
step time (run time / steps), and the *overhead*: the median over rounds of
``arm time / none time`` in the same round, minus 1. The per-round pairing
cancels most of the drift between rounds on a shared machine. The table also
gives each arm's CPU time (all threads), the writer thread's CPU time and the
minor page faults per step.

Allocator: by default (``--malloc steady``) glibc's mmap and trim thresholds
are fixed with ``mallopt`` at start-up, so memory freed by one step is reused by
the next in every arm. With glibc's adaptive defaults (``--malloc default``),
whether the model's 4 MB activations come back as fresh pages (~2,000 page
faults per step) depends on the heap's layout, which differs from run to run
and arm to arm: one arm's step time then swings by 20-70%, which is more
than the overheads measured here.

Memory: "peak extra memory at most 2x one logged step's tensors". One logged
step of ``watch-all`` holds every Conv/Linear layer's weight and bias, their
gradients, its output (pre-activation) and the output's gradient at batch 64,
15.56 MB of float32 (computed from the shapes). Each of ``none`` and
``watch-all`` then runs ``--memory-reps`` times (default 3) in a fresh
subprocess (``--arm NAME --memory``) that imports the same modules, builds the
data, resets its peak RSS to the current RSS (``/proc/self/clear_refs``), trains
``--steps`` steps and reports its peak RSS. The extra memory is
``median peak(watch-all) - median peak(none)``, given in logged steps. The peak
is Linux's ``VmHWM``, not ``getrusage().ru_maxrss``: ``ru_maxrss`` survives
``exec``, so a child of this (large) process would report at least the parent's
size and hide the difference. The background writer's ``peak_pending_bytes``
(bytes queued, not yet written) is printed too when the Recorder has it.

Run it
------
::

    .venv/bin/python benchmarks/collector_overhead.py             # full: ~100 s on 2 cores
    .venv/bin/python benchmarks/collector_overhead.py --quick     # smoke run, seconds
    .venv/bin/python benchmarks/collector_overhead.py --malloc default   # glibc's defaults
    .venv/bin/python benchmarks/collector_overhead.py --arms none tensorboard --no-memory
    .venv/bin/python benchmarks/collector_overhead.py --arm watch-all --memory   # one subprocess

Needs the ``torch`` extra and ``tensorboard``. Results and their discussion:
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from _allocator import set_malloc
from torch import nn

import tensorstats

REPO = Path(__file__).resolve().parent.parent
ARMS = ("none", "watch-all", "watch-wg", "summaries", "tensorboard", "wandb")
KINDS = {"watch-all": ("weight", "grad", "feature", "feature_grad"),
         "watch-wg": ("weight", "grad"),
         "summaries": ("weight", "grad", "feature", "feature_grad")}
SPARE_CORE_TARGET = 5.0
"""Issue 13: watch-all and watch-wg overhead with a spare core (``--threads 1``), percent;
on saturated cores watch-all at most W&B's overhead, watch-wg at most half of it."""
MEMORY_TARGET = 2.0
"""Peak extra memory of watch-all, in logged steps."""
BATCH = 64
N_BATCHES = 10
LR = 1e-4
THREADS = 2


# ------------------------------------------------------------------------ the model
def build_model(seed: int) -> nn.Sequential:
    """The seed paper's CNN, initialised from ``seed`` (PyTorch's default init)."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 16, 3, 1, 1)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(16, 16, 3, 1, 1)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(16, 16, 3, 1, 1)), ("relu3", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(1024, 512)), ("relu4", nn.ReLU()),
        ("fc2", nn.Linear(512, 10)),
    ]))


def make_data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``N_BATCHES`` batches of inputs (N, B, 3, 32, 32) and labels (N, B), fixed seed."""
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(N_BATCHES, BATCH, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (N_BATCHES, BATCH), generator=g)
    return x, y


def step_bytes(kinds: tuple[str, ...], seed: int) -> int:
    """Bytes of one logged step's tensors of the Conv/Linear layers, from their shapes."""
    model = build_model(seed)
    shapes: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
             for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(BATCH, 3, 32, 32))
    for h in hooks:
        h.remove()
    param = sum(p.numel() * p.element_size() for p in model.parameters())
    feature = sum(torch.Size(s).numel() * 4 for s in shapes)  # float32 outputs
    per_kind = {"weight": param, "grad": param, "feature": feature, "feature_grad": feature}
    return sum(per_kind[k] for k in kinds)


# ------------------------------------------------------------------------- the arms
@dataclass
class Logger:
    """What an arm does around the training loop: set-up, per-step call, close."""
    on_step: Callable[[int, torch.Tensor], float]
    close: Callable[[], None]
    writer: Any = None
    """The Recorder's background writer, if any (for ``peak_pending_bytes``)."""


def start_logger(arm: str, model: nn.Module, out: Path, every: int) -> Logger:
    """Create the arm's logger; called inside the timed region."""
    if arm == "none":
        return Logger(lambda _step, loss: loss.item(), lambda: None)
    if arm in KINDS:
        from tensorstats.torch import watch

        rec = tensorstats.Recorder(out, mode="w-")
        if arm == "summaries":  # per-channel moments of all four kinds at every step, no raw
            w = watch(model, rec, every=[], kinds=KINDS[arm], summaries="moments")
        else:
            w = watch(model, rec, every=every, kinds=KINDS[arm])

        def on_step(step: int, loss: torch.Tensor) -> float:
            value = loss.item()
            w.step(step, loss=value)
            return value

        def close() -> None:
            w.remove()
            rec.close()

        return Logger(on_step, close, rec._submitter.writer)
    if arm == "wandb":
        return start_wandb(model, out, every)
    if arm == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out))
        params = list(model.named_parameters())

        def on_step_tb(step: int, loss: torch.Tensor) -> float:
            value = loss.item()
            writer.add_scalar("loss", value, step)
            if step % every == 0:
                for name, p in params:
                    writer.add_histogram(name, p, step)
                    writer.add_histogram(name + ".grad", p.grad, step)
            return value

        return Logger(on_step_tb, writer.close)
    raise ValueError(f"unknown arm {arm!r}")


def start_wandb(model: nn.Module, out: Path, every: int) -> Logger:
    """W&B's ``watch(log="all", log_freq=every)`` in offline mode (no account, no network)."""
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    import wandb

    out.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project="tensorstats-overhead", dir=str(out), mode="offline",
                     settings=wandb.Settings(silent=True, console="off",
                                             x_disable_stats=True))
    wandb.watch(model, log="all", log_freq=every)

    def on_step(step: int, loss: torch.Tensor) -> float:
        value = loss.item()
        run.log({"loss": value}, step=step)
        return value

    def close() -> None:
        wandb.unwatch(model)
        run.finish()

    return Logger(on_step, close)


@dataclass
class Result:
    seconds: float
    close_seconds: float
    final_loss: float
    peak_pending: int | None
    writer_cpu: float | None
    """CPU seconds of the Recorder's background writer thread, if it counts them."""
    cpu: float
    """User + system CPU seconds of the whole process (all threads) during the run."""
    faults: int
    """Minor page faults of the process during the run."""


def run_arm(arm: str, out: Path, steps: int, every: int, seed: int,
            data: tuple[torch.Tensor, torch.Tensor]) -> Result:
    """Build the model (untimed), then time set-up + ``steps`` training steps + close."""
    x, y = data
    model = build_model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_value = float("nan")
    gc.collect()
    u0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    log = start_logger(arm, model, out, every)
    for step in range(steps):
        i = step % N_BATCHES
        opt.zero_grad()
        loss = F.cross_entropy(model(x[i]), y[i])
        loss.backward()
        opt.step()
        loss_value = log.on_step(step, loss)
    t1 = time.perf_counter()
    log.close()
    t2 = time.perf_counter()
    u1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime
    return Result(t2 - t0, t2 - t1, loss_value, getattr(log.writer, "peak_pending_bytes", None),
                  getattr(log.writer, "cpu_seconds", None), cpu, u1.ru_minflt - u0.ru_minflt)


@dataclass
class ArmStats:
    name: str
    results: list[Result] = field(default_factory=list)
    disk: tuple[int, int] = (0, 0)
    """(files, apparent bytes) of the first timed run's output."""

    @property
    def times(self) -> list[float]:
        return [r.seconds for r in self.results]


def disk_usage(path: Path) -> tuple[int, int]:
    files = size = 0
    for root, _, names in os.walk(path):
        for n in names:
            files += 1
            size += os.stat(os.path.join(root, n)).st_size
    return files, size


# ---------------------------------------------------------------------- memory mode
def _status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """Peak RSS in bytes: ``VmHWM`` where available, else ``ru_maxrss``.

    ``ru_maxrss`` survives ``exec``: a child of a large parent reports at least
    the parent's size at fork time. ``VmHWM`` belongs to the new address space.
    """
    hwm = _status_kib("VmHWM")
    if hwm is None:
        hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return hwm * 1024


def memory_child(arm: str, steps: int, every: int, seed: int) -> dict[str, Any]:
    """Run one arm once in this (fresh) process and report its peak RSS."""
    from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    import tensorstats.torch  # noqa: F401  every child imports the same modules

    data = make_data(seed)
    base = Path(tempfile.mkdtemp(prefix="tensorstats-overhead-mem-"))
    reset = _reset_peak_rss()  # so no start-up transient can hide the run's peak
    start = (_status_kib("VmRSS") or 0) * 1024
    try:
        res = run_arm(arm, base / "out", steps, every, seed, data)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"arm": arm, "rss_start": start, "peak": peak_rss(), "reset": reset,
            "peak_pending_bytes": res.peak_pending, "seconds": res.seconds}


def measure_memory(arm: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--arm", arm, "--memory",
           "--steps", str(args.steps), "--every", str(args.every), "--seed", str(args.seed),
           "--malloc", args.malloc]
    out = []
    for _ in range(args.memory_reps):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"memory run of {arm} failed:\n{proc.stderr}")
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


# ------------------------------------------------------------------------ reporting
def pct(ratio: float) -> str:
    return f"{(ratio - 1) * 100:+.1f}%"


def report(stats: dict[str, ArmStats], steps: int) -> dict[str, float]:
    """Print the table; return each arm's median per-round ratio to ``none``."""
    base = stats["none"].times
    header = (f"{'arm':<12} {'ms/step':>7} {'min-max ms/step':>15} {'overhead':>8} "
              f"{'CPU s':>5} {'wr CPU s':>8} {'flt/step':>8} {'close s':>7} {'files':>5} "
              f"{'MB out':>6} {'final loss':>10}  per-round ratio to none")
    print(header)
    print("-" * len(header))
    ratios: dict[str, float] = {}
    for name, s in stats.items():
        per_step = [t / steps * 1e3 for t in s.times]
        rr = [t / b for t, b in zip(s.times, base, strict=True)]
        ratios[name] = statistics.median(rr)
        med = statistics.median
        close = med(r.close_seconds for r in s.results)
        wcpu = [r.writer_cpu for r in s.results if r.writer_cpu is not None]
        files, size = s.disk
        print(f"{name:<12} {med(per_step):>7.2f} {min(per_step):>7.2f}-{max(per_step):<7.2f} "
              f"{pct(ratios[name]):>8} {med(r.cpu for r in s.results):>5.2f} "
              f"{f'{med(wcpu):.2f}' if wcpu else '-':>8} "
              f"{med(r.faults for r in s.results) / steps:>8.0f} {close:>7.3f} {files:>5} "
              f"{size / 1e6:>6.1f} {s.results[0].final_loss:>10.6f}  "
              + " ".join(f"{x:.3f}" for x in rr))
    return ratios


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200, help="training steps per run (200)")
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved rounds; medians over rounds are reported (5)")
    p.add_argument("--every", type=int, default=10, help="logging interval in steps (10)")
    p.add_argument("--warmup", type=int, default=12, help="steps of the untimed warm-up (12)")
    p.add_argument("--memory-reps", type=int, default=3,
                   help="fresh subprocesses per arm for peak RSS (3)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS measurement")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS),
                   help="arms to time (default all; 'none' is always included)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 12 steps, 1 round, 1 memory rep (numbers meaningless)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=THREADS,
                   help=f"torch threads ({THREADS}: saturated cores); 1 simulates a host "
                        "with a spare core (a GPU host), as issue 13 measures it")
    p.add_argument("--malloc", choices=("steady", "default"), default="steady",
                   help="glibc allocator thresholds: fixed so freed memory is reused "
                        "(steady, default) or glibc's adaptive defaults (default)")
    p.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    p.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.rounds, args.warmup, args.memory_reps = 12, 1, 2, 1
    if min(args.steps, args.rounds, args.every, args.warmup, args.memory_reps) < 1:
        p.error("--steps, --rounds, --every, --warmup and --memory-reps must be positive")
    torch.set_num_threads(args.threads)
    malloc = set_malloc(args.malloc)

    if args.memory:
        if args.arm is None:
            p.error("--memory needs --arm NAME")
        print(json.dumps(memory_child(args.arm, args.steps, args.every, args.seed)))
        return 0

    arms = ["none", *(a for a in ARMS if a in args.arms and a != "none")]
    data = make_data(args.seed)
    base = Path(tempfile.mkdtemp(prefix="tensorstats-overhead-"))
    same_fs = os.stat(base).st_dev == os.stat(REPO).st_dev
    import tensorboard

    print("tensorstats collector-overhead benchmark", flush=True)
    print(f"tensorstats {tensorstats.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), tensorboard {tensorboard.__version__}, "
          f"Python {platform.python_version()}, {platform.system()} {platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print(f"output folder: {base} (tempfile.mkdtemp; "
          f"{'same' if same_fs else 'NOT the same'} filesystem as the repo {REPO})")
    print(f"CNN, Adam lr {LR}, batch {BATCH}, steps={args.steps} every={args.every} "
          f"rounds={args.rounds} seed={args.seed}; arm order rotated each round; "
          "medians over rounds")
    print(f"allocator: {malloc}")
    print("time = logger set-up + training loop + close (flushes the writer); "
          "overhead = median over rounds of arm time / none time in the same round, - 1")
    sys.stdout.flush()

    stats = {a: ArmStats(a) for a in arms}
    try:
        for i, arm in enumerate(arms):  # warm-up: imports, allocator, first-touch costs
            run_arm(arm, base / f"warmup-{i}", args.warmup, args.every, args.seed, data)
        shutil.rmtree(base)
        base.mkdir()
        os.sync()
        for r in range(args.rounds):
            order = arms[r % len(arms):] + arms[:r % len(arms)]
            for arm in order:
                out = base / f"r{r}-{arm}"
                stats[arm].results.append(run_arm(arm, out, args.steps, args.every,
                                                  args.seed, data))
                if r == 0 and out.exists():
                    stats[arm].disk = disk_usage(out)
                shutil.rmtree(out, ignore_errors=True)
                os.sync()
            print(f"round {r + 1}/{args.rounds} done ({' '.join(order)})",
                  file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print()
    ratios = report(stats, args.steps)
    print("medians over rounds; CPU s = user+system CPU of the process (all threads) per run; "
          "wr CPU s = the Recorder's writer thread;")
    print("flt/step = minor page faults per step; close s = w.remove() + rec.close() or "
          "writer.close(); files, MB out = first timed run's output")
    losses = {round(s.results[0].final_loss, 6) for s in stats.values()}
    print("final losses " + ("identical in every arm" if len(losses) == 1
                             else "DIFFER between arms: logging changed training"))
    for arm in ("watch-all", "watch-wg"):
        if arm in stats:
            peaks = [r.peak_pending for r in stats[arm].results]
            if any(x is not None for x in peaks):
                print(f"{arm} writer peak_pending_bytes per round (MB): "
                      + " ".join("-" if x is None else f"{x / 1e6:.1f}" for x in peaks))

    sb_all = step_bytes(KINDS["watch-all"], args.seed)
    sb_wg = step_bytes(KINDS["watch-wg"], args.seed)
    print(f"\none logged step: watch-all {sb_all / 1e6:.2f} MB, watch-wg {sb_wg / 1e6:.2f} MB "
          f"(float32, from shapes; {args.steps // args.every + (args.steps % args.every > 0)} "
          "logged steps per run)")
    mem_line = None
    if not args.no_memory and "watch-all" in arms:
        mem = {a: measure_memory(a, args) for a in ("none", "watch-all")}
        for a, runs in mem.items():
            print(f"peak RSS, {a:<9} (fresh subprocess x{len(runs)}): "
                  + " ".join(f"{m['peak'] / 1e6:.1f}" for m in runs)
                  + " MB; RSS at start of the run: "
                  + " ".join(f"{m['rss_start'] / 1e6:.1f}" for m in runs) + " MB"
                  + ("" if all(m["reset"] for m in runs) else " (peak NOT reset at start)")
                  + "".join(f"; writer peak_pending {m['peak_pending_bytes'] / 1e6:.1f} MB"
                            for m in runs[:1] if m["peak_pending_bytes"] is not None))
        extra = (statistics.median(m["peak"] for m in mem["watch-all"])
                 - statistics.median(m["peak"] for m in mem["none"]))
        mem_line = (f"watch-all peak extra memory: {extra / 1e6:.1f} MB = "
                    f"{extra / sb_all:.2f}x one logged step (target <= {MEMORY_TARGET:g}x)")

    print()
    for arm in ("watch-all", "watch-wg"):
        if arm in ratios:  # issue 13: +5% with a spare core; against W&B when saturated
            target = (f"spare-core target <= +{SPARE_CORE_TARGET:g}%" if args.threads == 1
                      else "saturated cores: compared with W&B below")
            print(f"{arm} overhead: {pct(ratios[arm])} ({target})")
    if "tensorboard" in ratios:
        print(f"tensorboard overhead: {pct(ratios['tensorboard'])} (peer)")
    if "wandb" in ratios:
        wb = ratios["wandb"] - 1
        print(f"wandb overhead: {pct(ratios['wandb'])} (peer; torch threads {args.threads})")
        for arm, share in (("watch-all", 1.0), ("watch-wg", 0.5)):
            if arm in ratios:
                ours = ratios[arm] - 1
                print(f"{arm} overhead / wandb's: {ours / wb:.2f} "
                      f"(saturated-core target <= {share:g})" if wb > 0 else
                      f"{arm}: wandb showed no overhead")
    if "watch-all" in ratios and "tensorboard" in ratios:
        rr = [a / b for a, b in zip(stats["watch-all"].times, stats["tensorboard"].times,
                                    strict=True)]
        print(f"watch-all / tensorboard step time ratio: {statistics.median(rr):.2f}x "
              "(median over rounds)")
    if mem_line:
        print(mem_line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Batch norm and "internal covariate shift": the seed paper's CNN with and without BatchNorm.

Ioffe and Szegedy motivated batch norm by *internal covariate shift*: during
training the distribution of each layer's input keeps changing because the
layers below it change, and normalising fixes it. The question behind this
example (``/work/shared/seeds/002``) asks two things: does batch norm really
fix the distribution a layer sees, given that its learned scale and shift
(gamma, beta) keep moving? And are the normalised pre-activations Gaussian?
This script measures both on one pair of runs.

What it does:

- Data and model: scikit-learn's digits upsampled to 3x32x32 and the seed
  paper's CNN (``_seed_paper.py``), trained twice from the same weights
  (``--init``, Kaiming normal by default) on the same batches with Adam at
  lr 1e-4, batch 64: once as is ("no BN") and once with a ``BatchNorm2d``
  between each conv and its ReLU ("BN"). conv2's input is then
  maxpool(ReLU(BN(conv1 output))), and so on; fc1 has no BN of its own.
- Recording: ``tensorstats.torch.watch(model, rec, every=E, kinds=("feature",
  "input", "weight"), layers=[conv1, conv2, conv3, fc1], probes={"valid":
  128 validation images}, max_elements=4096)``. Above 4096 values per
  channel a fixed random subsample of positions is stored, with the exact
  moments of the full tensor beside it (``run.moments``). The stores use
  zstd compression (``Recorder(codec="zstd")``).
- Which series: the drift "batch norm is said to remove" concerns what a
  layer sees *during training*, i.e. in training mode, where BN normalises
  with the batch's own statistics. Consecutive training batches hold
  different images, so their drift mixes the change of the network with the
  change of the data (conv1's input, the images themselves, measures that
  floor). The ``valid`` probe removes the data variation, but ``watch`` runs
  probes in eval mode, where BN uses its running statistics: an average over
  about the last ten batches that starts at (mean 0, var 1) and so lags at the
  first logged steps. So at every logged step the same 128 images are also
  run in *training mode* with ``Watcher.probe_pass("valid_trainmode")`` (BN
  uses the probe batch's own statistics; its running statistics are not
  updated, which the script checks). The drift and normality tables use that
  series; the training batches and the eval-mode probe are compared in a
  table of their own. The probe series at step t see the weights after step
  t's update.
- Analysis per layer (conv1, conv2, conv3, fc1), each arm:

  * ``ts.shift(..., reference="previous")`` of each layer's input and
    pre-activation (the conv's output, which with BN is the input of the BN):
    W1 in the data's units, W1 divided by the previous step's std (exact
    std of the full tensor; scale-free, since BN changes scales) and the KS
    distance, medians over channels, per logged interval; and, for the last
    interval, the share of each channel's values at one non-zero value (a
    point mass, which KS weighs fully however little it moves) and the KS
    drift without it;
  * ``ts.normality`` of the pre-activations at every logged step: skew,
    excess kurtosis, KS distance to the best-fitting Gaussian, share of
    channels rejected by Shapiro-Wilk after Benjamini-Hochberg (FDR 5%);
  * the training loss and the final accuracy on the 360 validation images.

Outputs, in ``--out`` (default ``batchnorm-shift-output/``; only these files
are written, and the two stores are overwritten by the next run):

- ``plain.zarr``, ``bn.zarr``: the run stores (about 70 MB each by default, most of it
  fc1's weights);
- ``drift_ks_input.png``, ``drift_ks_preactivation.png``,
  ``drift_w1rel_input.png``, ``drift_w1rel_preactivation.png``: drift between
  consecutive logged steps per layer, both arms (``tensorstats.plot.shift``,
  median over channels with the interquartile band);
- ``drift_w1rel_input_training_batches.png``, ``drift_w1rel_input_eval_probe.png``:
  the inputs' drift in the other two series;
- ``moments.png``: std and excess kurtosis of the pre-activations over the
  training batches, exact moments, median over channels
  (``tensorstats.plot.trajectories``);
- ``normality_ks_distance.png``, ``normality_kurtosis.png``: layer x step
  heatmaps (``tensorstats.plot.normality_heatmap``);
- ``loss.png``: training loss of both arms;
- ``summary.md``: the tables and conclusions drawn from this run's numbers.

Run:

    python examples/batchnorm_shift.py                    # 10 epochs, every 20 steps
    python examples/batchnorm_shift.py --quick            # 2 epochs, every 10 steps
    python examples/batchnorm_shift.py --epochs 20 --every 10 --seed 1 --out here/

The default run takes about 20 s on an idle machine (one thread; ``--threads
2`` for two), the quick one about 10 s. Given the seed and the thread count
the numbers are the same from run to run.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from threadpoolctl import threadpool_limits
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _seed_paper as sp

import tensorstats as ts
import tensorstats.plot as tsplot
from tensorstats.torch import watch

ARMS = {"plain": False, "bn": True}
"""Store name -> whether the CNN has batch norm."""
LABEL = {"plain": "no BN", "bn": "BN"}
KINDS = ("feature", "input", "weight")
TENSOR = {"input": "input", "feature": "pre-activation"}
EVAL_PROBE = "valid"             # watch's probe: eval mode, BN uses running statistics
FIXED = "valid_trainmode"        # the same images in training mode: BN uses their statistics
PROBE_SIZE = 128
MAX_ELEMENTS = 4096
METRICS = ("wasserstein", "ks")
SIMILAR = (0.8, 1.25)
"""BN / no-BN ratios inside this range are called "about the same" in the conclusions."""


# ------------------------------------------------------------------------ training
@contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers use the batch's own statistics and leave their running ones alone.

    Training mode with ``momentum=0``: PyTorch then updates the running
    statistics as ``1 * old + 0 * batch``, i.e. not at all. Checked on exit.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(),
              m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.train()
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, mean, var, tracked) in zip(bns, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
            if not (torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var)):
                raise RuntimeError("the training-mode probe changed BatchNorm running statistics")


def train_arm(arm: str, data: dict, args: argparse.Namespace, out: Path) -> dict:
    """Train and record one arm; returns its run time and final validation accuracy."""
    model = sp.seed_cnn(args.init, batchnorm=ARMS[arm], seed=args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    fixed = data["x_valid"][:PROBE_SIZE]
    attrs = {"arm": LABEL[arm], "batchnorm": ARMS[arm], "init": args.init, "optimizer": "Adam",
             "lr": 1e-4, "batch_size": 64, "epochs": args.epochs, "every": args.every,
             "seed": args.seed, "probe": f"first {PROBE_SIZE} validation images; "
             f"{EVAL_PROBE!r} in eval mode, {FIXED!r} in training mode (BN batch statistics)"}
    t0 = time.perf_counter()
    with ts.Recorder(out / f"{arm}.zarr", mode="w", attrs=attrs, codec="zstd",
                     seed=args.seed) as rec:
        with watch(model, rec, every=args.every, kinds=KINDS, layers=list(sp.STUDIED),
                   probes={EVAL_PROBE: fixed}, max_elements=MAX_ELEMENTS) as w:
            for step, x, y in sp.batches(data, epochs=args.epochs, seed=args.seed):
                opt.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                w.step(step, loss=loss.item())
                if step % args.every == 0:
                    with w.probe_pass(FIXED, kinds=("feature", "input")), torch.no_grad(), \
                            batch_statistics(model):
                        model(fixed)
        accuracy = sp.accuracy(model, data["x_valid"], data["y_valid"])
        rec.record_scalar("valid_accuracy", accuracy, step=step)
    return {"seconds": time.perf_counter() - t0, "steps": step + 1, "accuracy": accuracy}


# ------------------------------------------------------------------------ analysis
def exact_moments(source: ts.Run, kind: str, layer: str) -> xr.Dataset:
    """Per step and channel, moments of the full tensor (stored ones where subsampled)."""
    stored = source.moments(kind, layer)
    return ts.moments(stored if stored is not None else source[kind, layer])


def drift(source: ts.Run, kind: str, layer: str) -> xr.Dataset:
    """W1 and KS of each channel against the previous logged step, and W1 / previous std."""
    d = ts.shift(source[kind, layer], reference="previous", metrics=METRICS)
    sigma = exact_moments(source, kind, layer)["std"].shift(step=1)
    d["w1_rel"] = d["wasserstein"] / sigma.where(sigma > 0)  # constant channels: NaN
    return d


def channel_median(da: xr.DataArray) -> np.ndarray:
    """Median over channels per step, finite values only; NaN where there are none."""
    rows = np.asarray(da.transpose("step", "channel").values, dtype=float)
    return np.array([np.median(r[np.isfinite(r)]) if np.isfinite(r).any() else np.nan
                     for r in rows])


def series(run: ts.Run, which: str) -> ts.Run:
    return {"train": run, "fixed": run.probe(FIXED), "eval": run.probe(EVAL_PROBE)}[which]


def analyse(runs: dict[str, ts.Run]) -> tuple[dict, dict, dict]:
    """Drift (all three series) and normality (fixed batch), loaded into memory.

    Each Dataset is computed on its own: with dask 2026.8 and xarray 2026.9,
    ``dask.compute`` of a Dataset whose variables share inputs can fail with
    "Missing dependency" (pydata/xarray#11329); ``Dataset.compute`` does not.
    """
    lazy_drift = {(which, arm, kind, layer): drift(series(run, which), kind, layer)
                  for which in ("fixed", "train", "eval") for arm, run in runs.items()
                  for kind in TENSOR for layer in sp.STUDIED}
    lazy_norm = {(arm, layer): ts.normality(series(run, "fixed")["feature", layer])
                 for arm, run in runs.items() for layer in sp.STUDIED}
    lazy_mom = {(arm, layer): exact_moments(run, "feature", layer)
                for arm, run in runs.items() for layer in sp.STUDIED}
    return tuple({key: ds.compute() for key, ds in lazy.items()}
                 for lazy in (lazy_drift, lazy_norm, lazy_mom))


def drift_summary(d: xr.Dataset) -> dict:
    """Medians over channels per interval (steps after the first) of each metric."""
    later = d.isel(step=slice(1, None))
    return {"steps": np.asarray(d["step"].values),
            **{m: channel_median(later[m]) for m in ("wasserstein", "w1_rel", "ks")}}


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is 0 or either is not finite."""
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else float("nan")


def g4(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.4g}"


def f3(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3f}"


def g3(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.3g}"


def f2(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.2f}"


def verdict(r: float) -> str:
    if not math.isfinite(r):
        return "n/a"
    return "lower" if r < SIMILAR[0] else "higher" if r > SIMILAR[1] else "about the same"


# ------------------------------------------------------------------------- figures
def stacked(parts: dict[str, xr.Dataset]) -> xr.Dataset:
    """Arms side by side on a ``run`` dim labelled "no BN" / "BN"."""
    return xr.concat(list(parts.values()), dim="run", coords="minimal",
                     compat="override").assign_coords(run=[LABEL[a] for a in parts])


def draw(drifts: dict, norms: dict, moms: dict, runs: dict, spe: int, out: Path) -> list[str]:
    files = []
    what = {"fixed": "fixed batch, training mode", "train": "training batches",
            "eval": "fixed batch, eval mode (BN: running statistics)"}
    plots = [("fixed", kind, metric) for kind in TENSOR for metric in ("ks", "w1_rel")]
    plots += [("train", "input", "w1_rel"), ("eval", "input", "w1_rel")]
    for which, kind, metric in plots:
        layers = [ly for ly in sp.STUDIED  # on the fixed batch conv1's input is constant
                  if not (kind == "input" and ly == "conv1" and which != "train")]
        results = {layer: stacked({arm: drifts[which, arm, kind, layer] for arm in runs})
                   for layer in layers}
        name = {"ks": "KS", "w1_rel": "W1 / previous std"}[metric]
        fig = tsplot.shift(results, metric, title=f"{TENSOR[kind]}s: {name} between "
                           f"consecutive logged steps\n{what[which]}; median and IQR over "
                           "channels")
        if metric == "w1_rel" and all(bool((r[metric] > 0).any()) for r in results.values()):
            fig.axes[0].set_yscale("log")  # drifts span decades
        tag = {"fixed": "", "train": "_training_batches", "eval": "_eval_probe"}[which]
        slug = {"ks": "ks", "w1_rel": "w1rel"}[metric]
        files.append(save(fig, out / f"drift_{slug}_{TENSOR[kind].replace('-', '')}{tag}.png"))

    traj = {layer: stacked({arm: moms[arm, layer][["std", "kurtosis"]].median("channel")
                            for arm in runs}) for layer in sp.STUDIED}
    fig = tsplot.trajectories(traj, ["std", "kurtosis"], hue="run",
                              title="pre-activations, training batches: median over channels"
                                    "\nof the exact std and excess kurtosis")
    files.append(save(fig, out / "moments.png"))

    heat = {f"{layer} · {LABEL[arm]}": norms[arm, layer] for layer in sp.STUDIED for arm in runs}
    for var in ("ks_distance", "kurtosis"):
        fig = tsplot.normality_heatmap(heat, var, test="shapiro", reduce="median",
                                       title=f"pre-activations, fixed batch, training mode:\n"
                                             f"median {var} over channels")
        files.append(save(fig, out / f"normality_{var}.png"))

    loss = xr.concat([run.scalars["loss"] for run in runs.values()], dim="run")
    loss = loss.assign_coords(run=[LABEL[a] for a in runs])
    per_epoch = loss.rolling(step=spe, min_periods=1).mean().rename("loss")
    fig = tsplot.trajectories(per_epoch, "loss", title=f"training loss (running mean over "
                                                       f"one epoch, {spe} steps)")
    files.append(save(fig, out / "loss.png"))
    return files


def save(fig, path: Path) -> str:
    fig.savefig(path, dpi=90)
    return path.name


# ------------------------------------------------------------------------- summary
def point_mass(source: ts.Run, kind: str, layer: str) -> dict[str, float]:
    """The largest non-zero point mass of each channel, and the KS drift without it.

    Over the last logged interval. Per channel and step, the most common value
    other than 0 (zeros, from a ReLU, stay at 0) and the share of the values
    it holds; the images' uniform background, passed through the layers
    below, makes such points. Then ``ts.shift`` KS with all values, and with
    those points left out (set to NaN: analyses use the finite values).
    Medians over channels.
    """
    da = source[kind, layer].isel(step=[-2, -1]).transpose("step", "channel", ...).load()
    flat = da.values.reshape(2, da.sizes["channel"], -1)
    keep = np.ones(flat.shape, dtype=bool)
    shares = []
    for s in range(2):
        for c in range(flat.shape[1]):
            row = flat[s, c]
            values, counts = np.unique(row[np.isfinite(row) & (row != 0)], return_counts=True)
            if counts.size:
                keep[s, c] = row != values[counts.argmax()]
                if s == 1:
                    shares.append(counts.max() / row.size)
    masked = da.where(keep.reshape(da.shape))
    ks = [float(ts.shift(x, reference="previous", metrics=("ks",))["ks"].isel(step=1).median())
          for x in (da, masked)]
    return {"share": float(np.median(shares)) if shares else 0.0, "ks": ks[0], "ks_rest": ks[1]}


def write_summary(runs: dict, info: dict, drifts: dict, norms: dict, args: argparse.Namespace,
                  out: Path) -> str:
    fixed = {(arm, kind, layer): drift_summary(drifts["fixed", arm, kind, layer])
             for arm in runs for kind in TENSOR for layer in sp.STUDIED}
    steps = next(iter(fixed.values()))["steps"]
    first, last = f"{steps[0]}→{steps[1]}", f"{steps[-2]}→{steps[-1]}"
    n_int = len(steps) - 1

    # 1. drift of the fixed batch, training mode
    drift_rows = []
    for layer in sp.STUDIED:
        for kind in TENSOR:
            for arm in runs:
                s = fixed[arm, kind, layer]
                drift_rows.append(
                    f"| {layer} | {TENSOR[kind]} | {LABEL[arm]} | {g4(s['wasserstein'][0])} | "
                    f"{g4(s['wasserstein'][-1])} | {g3(s['w1_rel'][0])} | "
                    f"{g3(s['w1_rel'][-1])} | {g3(float(np.median(s['w1_rel'])))} | "
                    f"{f3(s['ks'][0])} | {f3(s['ks'][-1])} | {f3(float(np.median(s['ks'])))} |")

    # 2. BN against no BN, over all intervals
    compare, cmp_rows = {}, []
    for layer in sp.STUDIED:
        for kind in TENSOR:
            c = {}
            for m in ("w1_rel", "ks"):
                p, b = fixed["plain", kind, layer][m], fixed["bn", kind, layer][m]
                c[m] = {"plain": float(np.median(p)), "bn": float(np.median(b)),
                        "lower": int(np.sum(b < p)),
                        "fall": (ratio(p[-1], p[0]), ratio(b[-1], b[0])),
                        "range_bn": (float(np.min(b)), float(np.max(b))),
                        "range_plain": (float(np.min(p)), float(np.max(p)))}
                c[m]["ratio"] = ratio(c[m]["bn"], c[m]["plain"])
            compare[kind, layer] = c
            r, k = c["w1_rel"], c["ks"]
            cmp_rows.append(f"| {layer} | {TENSOR[kind]} | {g3(r['plain'])} | {g3(r['bn'])} | "
                            f"{f2(r['ratio'])} | {r['lower']}/{n_int} | {f3(k['plain'])} | "
                            f"{f3(k['bn'])} | {f2(k['ratio'])} | {k['lower']}/{n_int} |")

    # 3. point masses, last interval
    atoms, atom_rows = {}, []
    for layer in sp.STUDIED:
        for kind in TENSOR:
            for arm, run in runs.items():
                a = atoms[arm, kind, layer] = point_mass(series(run, "fixed"), kind, layer)
                atom_rows.append(f"| {layer} | {TENSOR[kind]} | {LABEL[arm]} | {a['share']:.1%} "
                                 f"| {f3(a['ks'])} | {f3(a['ks_rest'])} |")

    # 4. the three series
    which_rows, by_series = [], {}
    for layer in sp.STUDIED:
        for kind in TENSOR:
            for arm in runs:
                vals = [float(np.median(drift_summary(drifts[w, arm, kind, layer])[m]))
                        for m in ("w1_rel", "ks") for w in ("train", "fixed", "eval")]
                by_series[arm, kind, layer] = vals
                which_rows.append(f"| {layer} | {TENSOR[kind]} | {LABEL[arm]} | "
                                  + " | ".join([g3(v) for v in vals[:3]]
                                               + [f3(v) for v in vals[3:]]) + " |")

    # 5. normality of the pre-activations, first and last logged step
    norm_rows, gauss = [], {}
    for layer in sp.STUDIED:
        for arm in runs:
            nt = norms[arm, layer]
            for pos in (0, -1):
                one = nt.isel(step=pos)
                rejected = float((one["pvalue_fdr"].sel(test="shapiro") < 0.05).mean())
                row = {"skew": float(one["skew"].median()),
                       "abs_skew": float(abs(one["skew"]).median()),
                       "kurtosis": float(one["kurtosis"].median()),
                       "abs_kurtosis": float(abs(one["kurtosis"]).median()),
                       "ks": float(one["ks_distance"].median()), "rejected": rejected,
                       "n": int(one["n"].median())}
                gauss[arm, layer, pos] = row
                norm_rows.append(f"| {layer} | {LABEL[arm]} | {int(one['step'])} | {row['n']} | "
                                 f"{row['skew']:+.3f} | {row['abs_skew']:.3f} | "
                                 f"{row['kurtosis']:+.3f} | {row['abs_kurtosis']:.3f} | "
                                 f"{row['ks']:.4f} | {row['rejected']:.0%} |")

    # 6. training
    train_rows, conv = [], {}
    spe = len(runs["plain"].scalars["loss"].dropna("step")) // args.epochs
    for arm, run in runs.items():
        loss = run.scalars["loss"].dropna("step").values
        conv[arm] = (float(loss[:spe].mean()), float(loss[-spe:].mean()), info[arm]["accuracy"])
        train_rows.append(f"| {LABEL[arm]} | {conv[arm][0]:.3f} | {conv[arm][1]:.4f} | "
                          f"{conv[arm][2]:.3f} | {info[arm]['seconds']:.1f} |")

    same_init = all(np.array_equal(runs["plain"]["weight", f"{layer}.weight"].isel(step=0).values,
                                   runs["bn"]["weight", f"{layer}.weight"].isel(step=0).values)
                    for layer in sp.STUDIED)
    eval_vs_train = {}  # BN: eval-mode over training-mode W1/σ, first and later intervals
    for kind in TENSOR:
        for layer in sp.STUDIED:
            if kind == "input" and layer == "conv1":
                continue
            e = drift_summary(drifts["eval", "bn", kind, layer])["w1_rel"]
            t = fixed["bn", kind, layer]["w1_rel"]
            r = [ratio(a, b) for a, b in zip(e, t, strict=True)]
            eval_vs_train[kind, layer] = (r[0], float(np.nanmedian(r[1:])))
    details = conclude(compare, atoms, gauss, by_series, eval_vs_train, conv, n_int, first,
                       last)
    conclusions = headline(compare, atoms, gauss, conv)

    lines = [
        "# Batch norm and internal covariate shift (seed 002)", "",
        f"The seed paper's CNN on the digits (3x32x32), with and without a BatchNorm2d between "
        f"each conv and its ReLU; init {args.init}, Adam lr 1e-4, batch 64, {args.epochs} "
        f"epochs ({info['plain']['steps']} steps), seed {args.seed}; logged every "
        f"{args.every} steps ({len(steps)} logged steps, {n_int} intervals). Both arms start "
        f"from the same weights ({'checked: equal' if same_init else 'NOT equal'} at step 0) "
        "and see the same batches. Written by `examples/batchnorm_shift.py`; figures next to "
        "this file.", "",
        "Unless a table says otherwise, the numbers come from a fixed batch of "
        f"{PROBE_SIZE} validation images run at every logged step in **training mode** (BN "
        "normalises with that batch's own statistics, as in a training step; its running "
        "statistics are left untouched), so that the drift between two logged steps is the "
        "change of the network alone, not of the images. Tensors with more than "
        f"{MAX_ELEMENTS} values per channel are a fixed subsample of {MAX_ELEMENTS} positions "
        "(the same at every step); stds are exact, from the full tensors. The fixed batch "
        "runs after the logged step's optimizer update, so at step 0 the arms already differ "
        "by one update. A layer's input "
        "with BN is what the BN before it hands on (conv2's input is maxpool(ReLU(BN(conv1 "
        "output)))); its pre-activation is the conv's output, i.e. the input of its BN.", "",
        "## Training", "",
        "| arm | mean loss, first epoch | mean loss, last epoch | validation accuracy "
        "(360 images) | seconds (training + recording) |", "| --- | --- | --- | --- | --- |",
        *train_rows, "",
        "## Drift between consecutive logged steps", "",
        f"`ts.shift(..., reference=\"previous\")` per channel, median over channels. First "
        f"interval = steps {first}, last interval = steps {last}. W1 is in the tensor's "
        "units; W1/σ divides each channel's W1 by its exact std at the earlier step (channels "
        "with σ = 0 left out), which makes it scale-free; KS is the largest gap between the "
        "two CDFs (0..1). \"median\" is the median over all intervals. conv1's input is the "
        "images themselves: on a fixed batch its drift is 0 by construction.", "",
        "| layer | tensor | arm | W1 first | W1 last | W1/σ first | W1/σ last | W1/σ median | "
        "KS first | KS last | KS median |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", *drift_rows, "",
        "## BN against no BN, all intervals", "",
        "Medians over intervals of the per-interval channel medians; \"BN lower\" counts the "
        "intervals in which BN's drift is below no-BN's.", "",
        "| layer | tensor | W1/σ no BN | W1/σ BN | ratio BN/no BN | BN lower | KS no BN | "
        "KS BN | ratio BN/no BN | BN lower |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", *cmp_rows, "",
        f"## Point masses, last interval ({last})", "",
        "Per channel, the share of values at its most common non-zero value (zeros after a "
        "ReLU stay at 0 and cannot move; the images' uniform background, passed through the "
        "layers below, gives one such point per channel), and the KS drift with all values "
        "and with that point left out; medians over channels. When a point mass moves by any "
        "amount, however small, KS counts its whole mass; W1/σ weighs the move by its "
        "size.", "",
        "| layer | tensor | arm | share at the point | KS | KS without the point |",
        "| --- | --- | --- | --- | --- | --- |", *atom_rows, "",
        "## Which series: drift, median over intervals", "",
        "Training batches: consecutive logged training batches (different images; conv1's "
        "input row is pure data variation, the floor of this series). Fixed batch, training "
        "mode: the series used above. Fixed batch, eval mode: `watch`'s `valid` probe, where "
        "BN uses its running statistics (without BN it equals the training-mode series).", "",
        "| layer | tensor | arm | W1/σ training batches | W1/σ fixed, train mode | W1/σ fixed, "
        "eval mode | KS training batches | KS fixed, train mode | KS fixed, eval mode |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", *which_rows, "",
        "## Are the pre-activations Gaussian?", "",
        "`ts.normality` of each channel's pre-activations (the conv's output; with BN, the "
        "BN's input) on the fixed batch, first and last logged step: medians over channels of "
        "skew, |skew|, excess kurtosis, |excess kurtosis| and the KS distance to the "
        "best-fitting Gaussian; share of "
        "channels rejected by Shapiro-Wilk after Benjamini-Hochberg over all steps and "
        "channels of that layer (FDR 5%). n = values per channel; the KS distance of a "
        "Gaussian sample is below about 1/√n (about its 99th percentile; 0.016 at n = 4096, "
        "0.088 at n = 128). Per "
        "channel, BN in training mode is an affine map (one scale and one shift for the whole "
        "batch), so its output has exactly the skew, kurtosis and KS distance of its input "
        "shown here.", "",
        "| layer | arm | step | n | skew | \\|skew\\| | excess kurtosis | \\|excess kurtosis\\| "
        "| KS distance | rejected |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", *norm_rows, "",
        "## Conclusions from this run", "", " ".join(conclusions), "",
        "## The numbers behind the conclusions", "", *details, "",
    ]
    text = "\n".join(lines)
    (out / "summary.md").write_text(text)
    return text


def listing(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def by_verdict(compare: dict, kind: str, layers: tuple[str, ...], m: str, n_int: int) -> dict:
    """Layers grouped by whether BN's drift (measure ``m``) is lower, higher or about the same."""
    groups: dict[str, list[str]] = {"lower": [], "higher": [], "about the same": []}
    for layer in layers:
        c = compare[kind, layer][m]
        v = verdict(c["ratio"])
        if v in groups:
            fmt = g3 if m == "w1_rel" else f3
            groups[v].append(f"{layer} ({fmt(c['bn'])} vs {fmt(c['plain'])}, BN lower in "
                             f"{c['lower']}/{n_int} intervals)")
    return groups


def describe(groups: dict, n: int) -> str:
    if len(groups["lower"]) == n:
        return f"lower for every layer: {listing(groups['lower'])}"
    answer = "lower for none" if not groups["lower"] else "mixed"
    parts = [f"lower for {listing(groups['lower'])}"]
    if groups["higher"]:
        parts.append(f"higher for {listing(groups['higher'])}")
    if groups["about the same"]:
        parts.append(f"about the same (ratio {SIMILAR[0]}–{SIMILAR[1]}) for "
                     f"{listing(groups['about the same'])}")
    return f"{answer}: " + "; ".join(parts)


def pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.0%}"


def headline(compare: dict, atoms: dict, gauss: dict, conv: dict) -> list[str]:
    """Five plain-words sentences, each decided by this run's numbers."""
    rels = [compare[k, ly]["w1_rel"][arm] for k in TENSOR for ly in sp.STUDIED
            for arm in ("plain", "bn") if not (k == "input" and ly == "conv1")]
    if not any(math.isfinite(x) for x in rels):
        return ["Every recorded tensor but the images was constant in this run (as with "
                "--init zeros), so neither a scale-free drift nor a shape can be measured; the "
                "tables show what could be computed."]
    out = []
    for kind, layers in (("input", sp.STUDIED[1:]), ("feature", sp.STUDIED)):
        rel = {ly: compare[kind, ly]["w1_rel"] for ly in layers}
        lower = [ly for ly in layers if verdict(rel[ly]["ratio"]) == "lower"]
        span = (f"{pct(min(rel[ly]['ratio'] for ly in lower))}–"
                f"{pct(max(rel[ly]['ratio'] for ly in lower))}") if lower else ""
        what = ("the input of each layer that comes after one (conv2, conv3, fc1)"
                if kind == "input" else "the pre-activations (conv outputs, which BN then "
                "normalises, and fc1's output)")
        if len(lower) == len(layers):
            text = (f"Batch norm reduced how much {what} moved between logged steps: measured "
                    f"scale-free as W1/σ, to {span} of the drift without batch norm")
        elif lower:
            text = (f"Batch norm reduced how much {what} moved between logged steps for "
                    f"{listing(lower)} (W1/σ to {span} of the drift without it), not for "
                    f"{listing([ly for ly in layers if ly not in lower])}")
        else:
            text = f"Batch norm did not reduce how much {what} moved between logged steps"
        ks_lower = [ly for ly in layers if verdict(compare[kind, ly]["ks"]["ratio"]) == "lower"]
        ks_not = [ly for ly in layers if ly not in ks_lower]
        if not ks_not:
            text += ", and by KS too."
        else:
            pm = [ly for ly in ks_not if all(atoms[a, kind, ly]["ks_rest"]
                                             < 0.5 * atoms[a, kind, ly]["ks"]
                                             for a in ("plain", "bn"))]
            if pm == ks_not:
                why = (", whose KS mostly measures a point mass (many identical values, as a "
                       "blank image background gives) moving slightly")
            elif pm:
                why = (f"; for {listing(pm)} KS mostly measures a point mass (many identical "
                       "values, as a blank image background gives) moving slightly")
            else:
                why = ""
            text += f"; by KS it did not for {listing(ks_not)}{why}."
        out.append(text)

    bn_in = [compare["input", ly]["w1_rel"] for ly in sp.STUDIED[1:]]
    lo, hi = min(c["range_bn"][0] for c in bn_in), max(c["range_bn"][1] for c in bn_in)
    falls = [compare[k, ly]["w1_rel"]["fall"][i] for k in TENSOR for ly in sp.STUDIED
             for i in (0, 1) if not (k == "input" and ly == "conv1")]
    falls = [f for f in falls if math.isfinite(f)]
    early = bool(falls) and sum(f < 1 for f in falls) >= 0.75 * len(falls)
    out.append(("It did not fix the inputs' distributions" if lo > 0 else
                "It fixed some of the inputs' distributions")
               + f": with batch norm they still moved by W1/σ {g3(lo)}–{g3(hi)} per "
               "interval" + (", most at the start of training, as without it." if early
                             else "."))

    convs = sp.CONVS
    rej = {a: float(np.mean([gauss[a, ly, -1]["rejected"] for ly in convs]))
           for a in ("plain", "bn")}
    closer = [ly for ly in sp.STUDIED if gauss["bn", ly, -1]["ks"]
              < gauss["plain", ly, -1]["ks"] - 1 / math.sqrt(gauss["plain", ly, -1]["n"])]
    further = [ly for ly in sp.STUDIED if gauss["bn", ly, -1]["ks"]
               > gauss["plain", ly, -1]["ks"] + 1 / math.sqrt(gauss["plain", ly, -1]["n"])]
    gaussian = "were not Gaussian" if min(rej.values()) > 0.5 else "were partly Gaussian"
    out.append(f"The pre-activations {gaussian} with or without batch norm (Shapiro-Wilk "
               f"rejected {pct(rej['bn'])} of the conv channels with it, {pct(rej['plain'])} "
               f"without, at the last step); by their KS distance to a Gaussian, batch norm's "
               f"were closer for {listing(closer)}, further for {listing(further)} and "
               "otherwise within noise; batch norm itself only shifts and scales each channel "
               "as a whole, so it changes no channel's shape, only what the next layer "
               "receives.")

    (l0p, l1p, ap), (l0b, l1b, ab) = conv["plain"], conv["bn"]
    out.append(f"With batch norm the mean training loss was {'lower' if l0b < l0p else 'higher'}"
               f" in the first epoch ({l0b:.3f} vs {l0p:.3f}) and "
               f"{'lower' if l1b < l1p else 'higher'} in the last ({l1b:.4f} vs {l1p:.4f}), and "
               f"validation accuracy was {ab:.1%} vs {ap:.1%}, in one run each.")
    return out


def conclude(compare: dict, atoms: dict, gauss: dict, by_series: dict, eval_vs_train: dict,
             conv: dict, n_int: int, first: str, last: str) -> list[str]:
    """Plain-words conclusions, each built from this run's numbers."""
    out = []
    disagree = []
    for kind, layers in (("input", sp.STUDIED[1:]), ("feature", sp.STUDIED)):
        rel = by_verdict(compare, kind, layers, "w1_rel", n_int)
        ks = by_verdict(compare, kind, layers, "ks", n_int)
        disagree += [(kind, layer) for layer in layers
                     if verdict(compare[kind, layer]["w1_rel"]["ratio"])
                     != verdict(compare[kind, layer]["ks"]["ratio"])]
        if kind == "input":
            head = ("- **Does BN reduce the step-to-step drift of each layer's input?** "
                    "(Median over intervals, BN vs no BN; conv1's input is the images and "
                    "does not drift in either arm.) ")
        else:
            head = ("- **And of the pre-activation** (the conv's output, i.e. BN's input; "
                    "fc1's output)? ")
        out.append(head + f"By W1/σ, BN's drift is {describe(rel, len(layers))}. By KS, it is "
                   f"{describe(ks, len(layers))}.")
    explained = [(kind, layer) for kind, layer in disagree
                 if all(atoms[arm, kind, layer]["ks_rest"] < 0.5 * atoms[arm, kind, layer]["ks"]
                        for arm in ("plain", "bn"))]
    unexplained = [k for k in disagree if k not in explained]
    if unexplained:
        out.append("- **The two measures also disagree** for "
                   + ", ".join(f"{layer} {TENSOR[kind]}" for kind, layer in unexplained)
                   + ", where leaving out the largest non-zero point mass does not halve the KS "
                   "drift in both arms; this run does not show why.")
    if explained:
        out.append("- **Where the two measures disagree** ("
                   + ", ".join(f"{layer} {TENSOR[kind]}" for kind, layer in explained)
                   + "), KS is dominated by a point mass (last interval, no BN / BN): "
                   + "; ".join(
                       f"{layer} {TENSOR[kind]} has {atoms['plain', kind, layer]['share']:.0%} / "
                       f"{atoms['bn', kind, layer]['share']:.0%} of its values at one non-zero "
                       f"value, and its KS drift is {f3(atoms['plain', kind, layer]['ks'])} / "
                       f"{f3(atoms['bn', kind, layer]['ks'])} with it, "
                       f"{f3(atoms['plain', kind, layer]['ks_rest'])} / "
                       f"{f3(atoms['bn', kind, layer]['ks_rest'])} without it"
                       for kind, layer in explained)
                   + ". KS counts the whole mass of such a point whenever it moves at all, "
                   "however little; W1/σ, which weighs a move by its size, is the better "
                   "scale-free measure for these tensors.")

    series_ = [(kind, layer) for kind in TENSOR for layer in sp.STUDIED
               if not (kind == "input" and layer == "conv1")]
    falls = [compare[k, layer]["w1_rel"]["fall"][i] for k, layer in series_ for i in (0, 1)]
    falls = [f for f in falls if math.isfinite(f)]
    below, med = sum(f < 1 for f in falls), float(np.median(falls)) if falls else float("nan")
    if falls and below >= 0.75 * len(falls) and med < SIMILAR[0]:
        trend = "the distributions move most early in training, in both arms"
    elif falls and below <= 0.25 * len(falls) and med > SIMILAR[1]:
        trend = "the drift grows during training"
    else:
        trend = "there is no consistent trend over these intervals"
    bn_inputs = [compare["input", layer]["w1_rel"] for layer in sp.STUDIED[1:]]
    lo_b = min(c["range_bn"][0] for c in bn_inputs)
    hi_b = max(c["range_bn"][1] for c in bn_inputs)
    lo_p = min(c["range_plain"][0] for c in bn_inputs)
    hi_p = max(c["range_plain"][1] for c in bn_inputs)
    out.append(f"- **Over training**, W1/σ of the last interval ({last}) is below that of the "
               f"first ({first}) in {below} of {len(falls)} layer-tensor-arm series (median "
               f"ratio last/first {f2(med)}): {trend}. With BN the inputs of conv2, conv3 and "
               f"fc1 still drift by W1/σ {g3(lo_b)}–{g3(hi_b)} per interval (no BN: "
               f"{g3(lo_p)}–{g3(hi_p)}): "
               + ("reduced, not removed" if lo_b > 0 else "not always above 0")
               + ". BN pins each channel's batch mean and variance (to its β and γ², which "
               "are learned too), not the rest of its distribution.")

    n_of = {layer: gauss["plain", layer, -1]["n"] for layer in sp.STUDIED}
    closer, further, same = [], [], []
    for layer in sp.STUDIED:
        p, b = gauss["plain", layer, -1], gauss["bn", layer, -1]
        item = f"{layer} ({b['ks']:.3f} vs {p['ks']:.3f})"
        noise = 1 / math.sqrt(n_of[layer])
        (closer if b["ks"] < p["ks"] - noise else further if b["ks"] > p["ks"] + noise
         else same).append(item)
    def shape(var: str, sd_factor: float) -> str:
        """Layers where BN's median |var| is below / above no-BN's by more than one sd."""
        less, more = [], []
        for ly in sp.STUDIED:
            b, p = gauss["bn", ly, -1][var], gauss["plain", ly, -1][var]
            sd = math.sqrt(sd_factor / n_of[ly])
            item = f"{ly} ({b:.2f} vs {p:.2f})"
            if b < p - sd:
                less.append(item)
            elif b > p + sd:
                more.append(item)
        return f"smaller for {listing(less)}, larger for {listing(more)}"

    rej = ", ".join(f"{ly} {gauss['bn', ly, -1]['rejected']:.0%} vs "
                    f"{gauss['plain', ly, -1]['rejected']:.0%}" for ly in sp.STUDIED)
    out.append("- **Are BN networks' pre-activations closer to Gaussian?** At the last logged "
               f"step, by the median KS distance to a Gaussian (BN vs no BN), closer for "
               f"{listing(closer)}, further for {listing(further)}, within 1/√n of each other "
               f"for {listing(same)}. Beyond one sampling sd of a single channel's value "
               f"(√(6/n) for skew, √(24/n) for kurtosis), BN's median |skew| is "
               f"{shape('abs_skew', 6)}, and its median |excess kurtosis| "
               f"{shape('abs_kurtosis', 24)}, the rest within it. Shapiro-Wilk rejects "
               f"normality for {rej} of channels (BN vs no BN). Since BN is affine per "
               "channel, what it hands on is exactly as (non-)Gaussian as these numbers; it "
               "sets a mean and a variance, not a Gaussian shape.")

    floor = by_series["plain", "input", "conv1"][3]
    inner = [by_series[arm, kind, layer][4] for arm in ("plain", "bn") for kind in TENSOR
             for layer in sp.STUDIED if not (kind == "input" and layer == "conv1")]
    bn_keys = [(kind, layer) for kind in TENSOR for layer in sp.STUDIED
               if not (kind == "input" and layer == "conv1")]
    early = float(np.median([eval_vs_train[k][0] for k in bn_keys]))
    later = float(np.median([eval_vs_train[k][1] for k in bn_keys]))
    if early > SIMILAR[1] and SIMILAR[0] <= later <= SIMILAR[1]:
        lag = ("so the eval-mode probe overstates BN's drift early on, while its running "
               "statistics (which start at mean 0, variance 1 and follow the batches with "
               "momentum 0.1) catch up, and agrees with training mode afterwards")
    elif SIMILAR[0] <= early <= SIMILAR[1] and SIMILAR[0] <= later <= SIMILAR[1]:
        lag = "so here the two modes agree"
    else:
        lag = "so the eval-mode probe does not measure what BN does in training"
    out.append(f"- **Which series to read**: across training batches, conv1's input (the "
               f"images alone, no network) already drifts by KS {f3(floor)}, against a median "
               f"KS drift of {f3(float(np.median(inner)))} caused by the network on the fixed "
               "batch, so training-batch drift is partly a measure of which images were drawn. "
               "With BN, the fixed batch in eval mode drifts (W1/σ) by "
               f"{f2(early)} times the training-mode drift in the first interval and "
               f"{f2(later)} times in the later ones (medians over the {len(bn_keys)} BN "
               f"series), {lag}.")

    (l0p, l1p, ap), (l0b, l1b, ab) = conv["plain"], conv["bn"]
    images = round(abs(ab - ap) * 360)
    out.append(f"- **Training**: mean loss over the last epoch {l1b:.4f} with BN vs {l1p:.4f} "
               f"without (first epoch {l0b:.3f} vs {l0p:.3f}); validation accuracy {ab:.3f} vs "
               f"{ap:.3f} ({images} of 360 images apart). One seed and one pair of runs: this "
               "run does not say how much of that another seed would change.")
    return out


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="batchnorm-shift-output", help="output folder")
    p.add_argument("--epochs", type=int, default=10, help="epochs per arm (10; 22 steps each)")
    p.add_argument("--every", type=int, default=20, help="log every this many steps (20)")
    p.add_argument("--init", choices=sp.INITS, default="kaiming_normal")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, choices=(1, 2), default=1,
                   help="torch and BLAS threads (default 1: on a busy machine two threads "
                        "that wait for each other ran up to 30 times slower)")
    p.add_argument("--quick", action="store_true", help="2 epochs, every 10 steps: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.every = 2, 10
    if args.epochs < 1 or args.every < 1:
        p.error("--epochs and --every must be at least 1")
    data = sp.load_digits_32(args.seed)
    if args.epochs * sp.steps_per_epoch(data) <= 2 * args.every:
        p.error("need at least three logged steps: raise --epochs or lower --every")
    threads = min(args.threads, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # also NumPy's BLAS, which the exact moments of subsampled tensors use while recording
    with threadpool_limits(limits=threads):
        return run(args, data, out)


def run(args: argparse.Namespace, data: dict, out: Path) -> int:
    """Train and record both arms, analyse, write the summary and the figures."""
    t0 = time.perf_counter()
    info = {}
    for arm in ARMS:
        info[arm] = train_arm(arm, data, args, out)
        print(f"{LABEL[arm]:>6}: {info[arm]['steps']} steps recorded in "
              f"{info[arm]['seconds']:.1f} s, validation accuracy {info[arm]['accuracy']:.3f}")
    runs = {arm: ts.open_run(out / f"{arm}.zarr") for arm in ARMS}
    drifts, norms, moms = analyse(runs)
    text = write_summary(runs, info, drifts, norms, args, out)
    files = draw(drifts, norms, moms, runs, sp.steps_per_epoch(data), out)
    print(text.split("## Conclusions from this run")[1].split("## ")[0].strip())
    print(f"\nwrote {out / 'summary.md'}, {len(files)} figures ({', '.join(files)}) and the "
          f"run stores {', '.join(f'{a}.zarr' for a in ARMS)} in {out.resolve()}/ "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The seed paper's first experiment: one CNN, seven initialisations, distributions before/after.

"Distributions in Deep Neural Networks" (B. Park) trains a 3-conv CNN under
several initialisations and compares the distributions of weights and
features before and after training, then measures the channel-wise gradient
*emission* and *absorption* on validation images. This script does the same
on scikit-learn's bundled digits at 3x32x32 (``_seed_paper.py``; no download),
with Adam at lr 1e-4, batch 64, no weight decay:

- inits: orthogonal, Kaiming normal and uniform, Xavier normal and uniform,
  ones, zeros (weights; biases zero);
- each run recorded with ``tensorstats.torch.watch``: weights, gradients,
  pre-activations and their gradients (``max_elements=4096`` per channel,
  with exact moments of the full tensors), pre-activations on fixed
  ``train``, ``valid`` and ``random`` probe batches (the paper's "input
  types"), and emission/absorption at capture time on the whole validation
  set with ``Watcher.probe_pass`` at every logged step;
- then analysed with ``ts.moments``, ``ts.normality``,
  ``ts.emission_absorption`` and drawn with ``tensorstats.plot``.

Outputs, in ``--out`` (default ``init-study-output/``; the run stores in it are
overwritten by the next run):

- ``<init>.zarr``: the run stores;
- ``loss.png``: training loss per initialisation;
- ``weights_<init>.png``: weight distributions per layer, first and last step,
  on shared bins;
- ``features_<init>.png``: pre-activation distributions per layer and probe;
- ``emission_<init>.png``: emission and absorption of conv2's first 15
  channels over the validation images at the last step (the paper's Figure 4);
- ``summary.md``: tables of moments and normality per layer before and after,
  feature spread by depth, convergence, emission against absorption, and the
  paper's findings checked against these numbers.

Run:  python examples/init_study.py [--epochs 15] [--inits orthogonal zeros ...] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _seed_paper as sp

import tensorstats as ts
import tensorstats.plot as tsplot
from tensorstats.torch import watch

PROBES = ("train", "valid", "random")
KINDS = ("weight", "grad", "feature", "feature_grad", "emission", "absorption")


def logged_steps(total: int, count: int) -> list[int]:
    """``count`` steps spread evenly over ``0..total-1``, first and last included."""
    return sorted({round(float(s)) for s in np.linspace(0, total - 1, count)})


def train_one(init: str, data: dict, args: argparse.Namespace, out: Path) -> dict:
    """Train and record one initialisation; returns timing and accuracy."""
    model = sp.seed_cnn(init, seed=args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    total = args.epochs * sp.steps_per_epoch(data)
    schedule = logged_steps(total, args.logged)
    g = torch.Generator().manual_seed(args.seed + 1)
    probes = {"train": data["x_train"][:64], "valid": data["x_valid"][:64],
              "random": torch.randn(64, 3, 32, 32, generator=g)}
    valid = list(zip(data["x_valid"].split(64), data["y_valid"].split(64), strict=True))
    attrs = {"init": init, "model": "seed-paper CNN (3 conv + 2 linear), 3x32x32 digits",
             "optimizer": "Adam", "lr": 1e-4, "batch_size": 64, "epochs": args.epochs,
             "seed": args.seed}
    t0 = time.perf_counter()
    with ts.Recorder(out / f"{init}.zarr", mode="w", attrs=attrs) as rec, \
            watch(model, rec, every=schedule, kinds=KINDS, probes=probes,
                  max_elements=4096) as w:
        for step, x, y in sp.batches(data, epochs=args.epochs, seed=args.seed):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            w.step(step, loss=loss.item())
            if step in schedule:  # the paper's validation images, no training step
                with w.probe_pass("valid", kinds=("weight", "emission", "absorption")):
                    for xb, yb in valid:  # summed: each image's gradient is its own loss's
                        F.cross_entropy(model(xb), yb, reduction="sum").backward()
        rec.record_scalar("valid_accuracy",
                          sp.accuracy(model, data["x_valid"], data["y_valid"]), step=step)
    return {"seconds": time.perf_counter() - t0, "steps": total}


# ------------------------------------------------------------------------ analysis
def first_last(da):
    """The first and last step of a per-step result, as floats."""
    return float(da.isel(step=0)), float(da.isel(step=-1))


def weight_table(runs: dict) -> tuple[list[str], dict]:
    rows, found = [], {}
    for init, run in runs.items():
        for layer in sp.STUDIED:
            w = run["weight", f"{layer}.weight"]
            m = ts.moments(w, by="step")
            nt = ts.normality(w, by="step", tests=("shapiro",))
            mean0, mean1 = first_last(m["mean"])
            std0, std1 = first_last(m["std"])
            k0, k1 = first_last(m["kurtosis"])
            w0, w1 = first_last(nt["statistic"].sel(test="shapiro"))
            found[init, layer] = {"mean": (mean0, mean1), "std": (std0, std1),
                                  "kurtosis": (k0, k1), "W": (w0, w1)}
            rows.append(f"| {init} | {layer} | {mean0:+.4f} → {mean1:+.4f} | "
                        f"{std0:.4f} → {std1:.4f} | {fmt(k0)} → {fmt(k1)} | "
                        f"{fmt(w0)} → {fmt(w1)} |")
    return rows, found


def fmt(x: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"


def feature_std(run, probe: str, layer: str) -> tuple[float, float]:
    """Std of all of a layer's pre-activations on a probe, first and last step (exact)."""
    source = run.probe(probe)
    stored = source.moments("feature", layer)  # exact moments of the full, subsampled tensor
    m = ts.moments(stored, by="step") if stored is not None else \
        ts.moments(source["feature", layer], by="step")
    return first_last(m["std"])


def feature_table(runs: dict) -> tuple[list[str], dict]:
    rows, found = [], {}
    for init, run in runs.items():
        for probe in PROBES:
            cells = []
            for layer in sp.STUDIED:
                before, after = feature_std(run, probe, layer)
                found[init, probe, layer] = (before, after)
                cells.append(f"{fmt(before, 2)} → {fmt(after, 2)}")
            rows.append(f"| {init} | {probe} | " + " | ".join(cells) + " |")
    return rows, found


def spread(values: np.ndarray) -> tuple[float, float]:
    """Median over channels of the coefficient of variation over samples (std / mean) of
    ``values`` (sample, channel), raw and as each sample's share of its total.

    Raw values scale with each image's loss gradient, which varies far more between
    images than between channels; the shares take that common factor out.
    """
    def cv(v: np.ndarray) -> float:
        mean = v.mean(0)
        ok = mean > 0
        return float(np.median(v.std(0)[ok] / mean[ok])) if ok.any() else float("nan")

    total = values.sum(1, keepdims=True)
    keep = total[:, 0] > 0
    if not keep.any():  # no gradient reached the layer (zeros)
        return cv(values), float("nan")
    return cv(values), cv(values[keep] / total[keep])


def emission_table(runs: dict) -> tuple[list[str], dict]:
    """Spread over validation images of each channel's emission and absorption (last step)."""
    rows, found = [], {}
    for init, run in runs.items():
        for layer in sp.CONVS:
            ds = ts.emission_absorption(run.probe("valid"), layer).isel(step=-1).compute()
            em, ab = spread(ds["emission"].values), spread(ds["absorption"].values)
            found[init, layer] = {"emission": em, "absorption": ab}
            rows.append(f"| {init} | {layer} | {fmt(em[0], 2)} | {fmt(ab[0], 2)} | "
                        f"{fmt(em[1], 3)} | {fmt(ab[1], 3)} |")
    return rows, found


def convergence(runs: dict) -> dict:
    """Final training loss (mean of the last 20 steps), steps to loss < 0.5, valid accuracy."""
    out = {}
    for init, run in runs.items():
        loss = run.scalars["loss"].dropna("step")
        values = loss.values
        below = np.flatnonzero(values < 0.5)
        out[init] = {"final": float(values[-20:].mean()),
                     "first": float(values[:5].mean()),
                     "to_half": int(loss["step"].values[below[0]]) if below.size else None,
                     "accuracy": float(run.scalars["valid_accuracy"].dropna("step")[-1])}
    return out


# -------------------------------------------------------------------------- figures
def draw(runs: dict, out: Path) -> list[str]:
    files = []
    loss = ts.open_runs({n: r.store for n, r in runs.items()}).scalars["loss"]
    fig = tsplot.trajectories(loss.rolling(step=10, min_periods=1).mean().rename("loss"),
                              var="loss", logy=True,
                              title="training loss (mean of 10 steps, log scale)")
    files.append(save(fig, out / "loss.png"))
    for init, run in runs.items():
        weights = {layer: run["weight", f"{layer}.weight"] for layer in sp.STUDIED}
        files.append(save(tsplot.distributions(weights, title=f"{init}: weights, first and "
                                               "last step"), out / f"weights_{init}.png"))
        features = {f"{layer} · {probe}": run.probe(probe)["feature", layer]
                    for layer in sp.STUDIED for probe in PROBES}
        files.append(save(tsplot.distributions(features, log=True, title=f"{init}: "
                                               "pre-activations, first and last step"),
                          out / f"features_{init}.png"))
        ea = ts.emission_absorption(run.probe("valid"), "conv2")
        files.append(save(tsplot.emission_absorption(ea, k=15, title=f"{init}: conv2 on the "
                                                     "validation images, last step"),
                          out / f"emission_{init}.png"))
    return files


def save(fig, path: Path) -> str:
    fig.savefig(path, dpi=90)
    return path.name


# --------------------------------------------------------------------------- summary
def findings(conv: dict, weights: dict, features: dict, emission: dict) -> list[str]:
    """The paper's findings, each checked against this run's numbers."""
    trained = [i for i in conv if i != "zeros"]
    lines = []
    centred = [abs(weights[i, layer]["mean"][1]) < 0.1 * weights[i, layer]["std"][1]
               for i in trained for layer in sp.STUDIED if i != "ones"]
    grew = [weights[i, layer]["std"][1] > weights[i, layer]["std"][0]
            for i in trained for layer in sp.STUDIED if i != "ones"]
    lines.append(f"- **Weights stay centred while their variance grows** (paper): the mean "
                 f"stays within 10% of a std of 0 in {sum(centred)}/{len(centred)} layer-runs "
                 f"and the std grew in {sum(grew)}/{len(grew)} (the random-sign inits; ones "
                 "and zeros have no spread to grow from).")
    uniform = [(i, layer) for i in ("kaiming_uniform", "xavier_uniform") if i in conv
               for layer in sp.STUDIED]
    if uniform:
        change = [abs(weights[k]["kurtosis"][0]) - abs(weights[k]["kurtosis"][1])
                  for k in uniform]
        growth = [weights[k]["std"][1] / weights[k]["std"][0] - 1 for k in uniform]
        ks = ", ".join(f"{i.split('_')[0]} {layer} {weights[i, layer]['kurtosis'][0]:+.2f}→"
                       f"{weights[i, layer]['kurtosis'][1]:+.2f}" for i, layer in uniform)
        verdict = ("clearly" if min(change) > 0.1 else
                   "only slightly: the largest move is " f"{max(change):.2f}, against 1.2 to go")
        lines.append(f"- **Uniform initialisations drift toward Gaussian** (paper): excess "
                     f"kurtosis (−1.2 for a uniform, 0 for a Gaussian) moved toward 0 in "
                     f"{sum(c > 0 for c in change)}/{len(change)} layers, {verdict} ({ks}). "
                     f"Their weight std grew by {100 * min(growth):.0f}–"
                     f"{100 * max(growth):.0f}%: in this short run the weights move little "
                     "from their initial values, so their shape changes little.")
    deeper = []
    for i in trained:
        after = [features[i, "valid", layer][1] for layer in sp.CONVS]
        deeper.append(after[0] < after[1] < after[2])
    lines.append(f"- **Feature std grows with depth after training** (paper): on the valid "
                 f"probe, std(conv1) < std(conv2) < std(conv3) at the last step in "
                 f"{sum(deeper)}/{len(deeper)} trained runs.")
    order = sorted(trained, key=lambda i: conv[i]["final"])
    lines.append("- **Orthogonal converges fastest, then Kaiming** (paper): final training "
                 "loss, best first: " + ", ".join(f"{i} {conv[i]['final']:.3f}" for i in order)
                 + "; first step with a loss below 0.5: " + ", ".join(
                     f"{i} {conv[i]['to_half']}" for i in order if conv[i]["to_half"] is not None)
                 + f" (one seed, {len(trained)} runs).")
    if "zeros" in conv:
        z = conv["zeros"]
        lines.append(f"- **Zeros shows no dynamics** (paper): its loss went from "
                     f"{z['first']:.3f} to {z['final']:.3f} (ln 10 = {math.log(10):.3f}); "
                     f"validation accuracy {z['accuracy']:.2f}. All of its conv weights "
                     "stay 0 (std "
                     + ", ".join(f"{weights['zeros', layer]['std'][1]:.1e}" for layer in sp.CONVS)
                     + "): only the last layer's bias learns the class frequencies.")
    cases = [(i, layer) for i in trained for layer in sp.CONVS  # ones: all channels alike
             if all(math.isfinite(v) and v > 0 for v in emission[i, layer]["emission"] +
                    emission[i, layer]["absorption"])]
    raw = [emission[k]["emission"][0] / emission[k]["absorption"][0] for k in cases]
    share = [emission[k]["emission"][1] / emission[k]["absorption"][1] for k in cases]
    lines.append(f"- **Emission varies more than absorption** (paper): over the validation "
                 f"images, the raw values of both vary alike (CV ratio emission/absorption "
                 f"{min(raw):.2f}–{max(raw):.2f}), because each image's loss gradient scales "
                 f"both. As shares of each image's total, emission varies more than "
                 f"absorption by over 10% in {sum(r > 1.1 for r in share)}/{len(share)} conv "
                 f"layer-runs and less in {sum(r < 1 / 1.1 for r in share)} (ratio "
                 f"{min(share):.2f}–{max(share):.2f}; table above).")
    return lines


def summary(runs: dict, conv: dict, args: argparse.Namespace, out: Path) -> None:
    w_rows, weights = weight_table(runs)
    f_rows, features = feature_table(runs)
    e_rows, emission = emission_table(runs)
    lines = [
        "# Initialisation study (seed paper, first experiment)", "",
        f"Digits at 3x32x32, the paper's CNN, Adam lr 1e-4, batch 64, {args.epochs} epochs "
        f"({args.epochs * 22} steps of 64 of the 1437 training images), seed {args.seed}. "
        "Written by "
        "`examples/init_study.py`; figures next to this file.", "",
        "## Convergence", "",
        "| init | loss, first 5 steps | loss, last 20 steps | first step with loss < 0.5 | "
        "valid accuracy |", "| --- | --- | --- | --- | --- |",
        *(f"| {i} | {c['first']:.3f} | {c['final']:.3f} | {c['to_half'] or 'never'} | "
          f"{c['accuracy']:.3f} |" for i, c in conv.items()), "",
        "## Weights, first → last step", "",
        "Over all of a layer's weights: mean, std, excess kurtosis, Shapiro-Wilk W (1 = "
        "Gaussian; on a 5000-value subsample).", "",
        "| init | layer | mean | std | excess kurtosis | Shapiro W |",
        "| --- | --- | --- | --- | --- | --- |", *w_rows, "",
        "## Pre-activation std by depth and probe, first → last step", "",
        "Exact std of all of a layer's pre-activations on the probe batch (64 images each).",
        "", "| init | probe | " + " | ".join(sp.STUDIED) + " |",
        "| --- | --- | " + " | ".join("---" for _ in sp.STUDIED) + " |", *f_rows, "",
        "## Emission and absorption, last step, validation images", "",
        "Per channel, the coefficient of variation (std / mean) over the 360 validation "
        "images, median over channels: of the values, and of each image's share of its "
        "total (Σ emission = Σ absorption for every image), which takes out how much "
        "gradient the image's loss sends at all.", "",
        "| init | layer | CV emission | CV absorption | CV emission share | "
        "CV absorption share |",
        "| --- | --- | --- | --- | --- | --- |", *e_rows, "",
        "## The paper's findings against this run", "",
        *findings(conv, weights, features, emission), "",
    ]
    (out / "summary.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="init-study-output", help="output folder")
    p.add_argument("--epochs", type=int, default=15, help="epochs per init (15)")
    p.add_argument("--logged", type=int, default=11, help="logged steps per run (11)")
    p.add_argument("--inits", nargs="+", choices=sp.INITS, default=list(sp.INITS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="2 inits, 1 epoch: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.logged = 1, 3
        args.inits = [i for i in args.inits if i in ("orthogonal", "zeros")] or args.inits[:2]
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = sp.load_digits_32(args.seed)
    for init in args.inits:
        info = train_one(init, data, args, out)
        print(f"{init:>16}: {info['steps']} steps recorded in {info['seconds']:.1f} s")
    runs = {init: ts.open_run(out / f"{init}.zarr") for init in args.inits}
    conv = convergence(runs)
    summary(runs, conv, args, out)
    files = draw(runs, out)
    print(f"\nwrote {out / 'summary.md'} and {len(files)} figures in {out}/")
    print((out / "summary.md").read_text().split("## The paper's findings against this run")[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())

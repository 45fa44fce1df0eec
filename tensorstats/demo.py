"""``python -m tensorstats.demo``: train the seed paper's CNN twice, record it, compare.

The seed paper ("Distributions in Deep Neural Networks", B. Park) trains a
3-conv CNN under several initialisations and looks at how weights and
pre-activations are distributed before and after training. This demo does the
same at laptop scale, on scikit-learn's bundled handwritten digits (8x8
images, 10 classes; no download):

1. trains the CNN with Kaiming and with Xavier initialisation (Adam, batch 64),
   each run recorded with :func:`tensorstats.torch.watch` every 10 steps:
   weights, gradients, pre-activations and their gradients, plus the
   pre-activations on fixed ``train``, ``valid`` and ``random`` probe batches;
2. opens both runs lazily with :func:`tensorstats.open_runs`;
3. writes a plain-text report (``demo-output/report.txt``) and prints it: the
   stores, the loss, how the spread of weights and pre-activations moved
   (the paper: weights stay centred while their variance grows; feature
   variance grows with depth), computed with :func:`tensorstats.moments`, and
   whether each layer's pre-activations are Gaussian per channel, with
   :func:`tensorstats.normality`.

Without PyTorch it falls back to a NumPy MLP recorded with the bare
:class:`~tensorstats.Recorder` (see :mod:`tensorstats.demo_numpy`).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

import tensorstats as ts

INITS = ("kaiming", "xavier")


def load_digits_split(seed: int = 0) -> dict[str, np.ndarray]:
    """Digits as (N, 1, 8, 8) float32, standardised, split 80/20."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    x = (x - x.mean()) / x.std()
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.8 * len(x))
    return {"x_train": x[order[:cut]], "y_train": y[order[:cut]],
            "x_valid": x[order[cut:]], "y_valid": y[order[cut:]]}


def seed_cnn(init: str, seed: int = 0) -> Any:
    """The seed paper's CNN (three 3x3 convs, two max-pools, two Linear), for 1x8x8 inputs."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential()
    model.add_module("conv1", nn.Conv2d(1, 16, 3, 1, 1))
    model.add_module("relu1", nn.ReLU())
    model.add_module("pool1", nn.MaxPool2d(2))
    model.add_module("conv2", nn.Conv2d(16, 16, 3, 1, 1))
    model.add_module("relu2", nn.ReLU())
    model.add_module("pool2", nn.MaxPool2d(2))
    model.add_module("conv3", nn.Conv2d(16, 16, 3, 1, 1))
    model.add_module("relu3", nn.ReLU())
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc1", nn.Linear(16 * 2 * 2, 128))
    model.add_module("relu4", nn.ReLU())
    model.add_module("fc2", nn.Linear(128, 10))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if init == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif init == "xavier":
                nn.init.xavier_normal_(m.weight)
            else:
                raise ValueError(f"unknown init {init!r}; choose from {INITS}")
            nn.init.zeros_(m.bias)
    return model


def train(path: str, init: str, data: dict[str, np.ndarray], *, steps: int = 300,
          every: int = 10, batch: int = 64, lr: float = 1e-3, seed: int = 0) -> dict[str, Any]:
    """Train one run and record it into ``path`` (overwritten if it is a store)."""
    import torch
    import torch.nn.functional as F

    from tensorstats.torch import watch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    model = seed_cnn(init, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    g = torch.Generator().manual_seed(seed)
    probes = {"train": x[:256], "valid": torch.from_numpy(data["x_valid"][:256]),
              "random": torch.randn(256, 1, 8, 8, generator=g)}
    attrs = {"model": "seed-paper CNN (3 conv + 2 linear) on 1x8x8 digits", "init": init,
             "optimizer": "Adam", "lr": lr, "batch_size": batch, "seed": seed,
             "data": "scikit-learn digits, 80% train"}
    t0 = time.perf_counter()
    with ts.Recorder(path, mode="w", attrs=attrs) as rec, \
            watch(model, rec, every=ts.every(every), probes=probes) as w:
        for step in range(steps):
            idx = torch.randint(0, len(x), (batch,), generator=g)
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            w.step(step, loss=loss.item())
        with torch.no_grad():
            pred = model(torch.from_numpy(data["x_valid"])).argmax(1).numpy()
        rec.record_scalar("valid_accuracy", float((pred == data["y_valid"]).mean()),
                          step=steps - 1)
    return {"seconds": time.perf_counter() - t0}


def report(paths: dict[str, str]) -> str:
    """Plain-text comparison of the runs, computed lazily from the stores."""
    runs = ts.open_runs(paths)
    lines = []
    for run in runs.runs.values():
        lines += [repr(run), ""]
    lines.append("loss (mean of first / last 20 steps) and validation accuracy")
    loss = runs.scalars["loss"]
    for name in runs.names:
        values = loss.sel(run=name).dropna("step").values
        acc = runs.scalars["valid_accuracy"].sel(run=name).dropna("step").values[-1]
        lines.append(f"  {name:<8} {values[:20].mean():.3f} -> {values[-20:].mean():.3f}   "
                     f"valid accuracy {acc:.1%}")
    lines += ["", "weights: mean and std over all elements, first vs last recorded step",
              f"  {'run':<8} {'layer':<13}{'mean0':>9}{'mean1':>9}{'std0':>9}{'std1':>9}"
              f"{'std1/std0':>11}"]
    for layer in [lay for lay in runs.layers("weight") if lay.endswith(".weight")]:
        stats = ts.moments(runs["weight", layer], by=("run", "step")).compute()
        for name in runs.names:
            m, s = stats["mean"].sel(run=name).values, stats["std"].sel(run=name).values
            lines.append(f"  {name:<8} {layer:<13}{m[0]:>9.4f}{m[-1]:>9.4f}{s[0]:>9.4f}"
                         f"{s[-1]:>9.4f}{s[-1] / s[0]:>11.2f}")
    lines += ["", "pre-activations on the fixed probe batches: std over samples, channels "
              "and positions,", "first vs last recorded step, by depth"]
    first = runs.runs[runs.names[0]]
    header = f"  {'run':<8} {'layer':<7}" + "".join(
        f"{p + ' 0':>10}{p + ' 1':>10}" for p in first.probes)
    lines.append(header)
    for name, run in runs.runs.items():
        for layer in run.probe(first.probes[0]).layers("feature"):
            row = f"  {name:<8} {layer:<7}"
            for probe in run.probes:
                std = ts.moments(run.probe(probe)["feature", layer], by="step")["std"].values
                row += f"{std[0]:>10.3f}{std[-1]:>10.3f}"
            lines.append(row)
    lines += normality_section(runs)
    lines += shift_section(runs)
    lines += correlation_section(runs)
    return "\n".join(lines)


def shift_section(runs: ts.Runs) -> list[str]:
    """How far each run's weights moved from its own initialisation (the paper's comparison)."""
    lines = ["", "weights: distance from their own initialisation at the last step "
             "(ts.shift, reference='initial'), median over channels",
             f"  {'run':<8} {'layer':<13}{'W1':>9}{'KS':>7}{'JS bits':>9}"]
    for layer in [lay for lay in runs.layers("weight") if lay.endswith(".weight")]:
        res = ts.shift(runs["weight", layer], metrics=("wasserstein", "ks", "js")).compute()
        for name in runs.names:
            last = res.sel(run=name).isel(step=-1)
            lines.append(f"  {name:<8} {layer:<13}{float(last['wasserstein'].median()):>9.4f}"
                         f"{float(last['ks'].median()):>7.3f}{float(last['js'].median()):>9.3f}")
    return lines


def correlation_section(runs: ts.Runs) -> list[str]:
    """Does the spread of each layer's pre-activations track the loss?"""
    lines = ["", "does pre-activation variance track the loss? ts.correlate(variance per step, "
             "loss averaged over each logging interval,", "method='spearman', "
             "detrend='difference'): r at lag 0 (raw r in brackets, inflated by trends)",
             f"  {'run':<8}" + "".join(f"{layer:>16}" for layer in runs.layers("feature"))]
    loss = runs.scalars["loss"]
    for name in runs.names:
        row = f"  {name:<8}"
        for layer in runs.layers("feature"):
            var = ts.moments(runs["feature", layer].sel(run=name), by="step")["var"]
            y = loss.sel(run=name)
            diff = ts.correlate(var, y, align="mean", detrend="difference").compute()
            raw = ts.correlate(var, y, align="mean").compute()
            row += f"{float(diff['r'].sel(lag=0)):>8.2f} ({float(raw['r'].sel(lag=0)):>5.2f})"
        lines.append(row)
    return lines


def normality_section(runs: ts.Runs) -> list[str]:
    """Are the pre-activations Gaussian, per channel, at the first and last step?"""
    lines = ["", "are pre-activations Gaussian? ts.normality per channel (Shapiro-Wilk, "
             "Benjamini-Hochberg over channels and steps),",
             "first vs last recorded step: share of channels rejected at FDR 5%, and the "
             "median effect sizes",
             f"  {'run':<8} {'layer':<7}{'n':>6}{'reject0':>9}{'reject1':>9}{'|skew|1':>9}"
             f"{'kurt1':>8}{'ks1':>8}"]
    for layer in runs.layers("feature"):
        res = ts.normality(runs["feature", layer], tests=("shapiro",)).compute()
        for name in runs.names:
            r = res.sel(run=name).dropna("step", how="all")
            rejected = (r["pvalue_fdr"].sel(test="shapiro") < 0.05).mean("channel").values
            last = r.isel(step=-1)
            lines.append(
                f"  {name:<8} {layer:<7}{int(r['n'].max()):>6}{rejected[0]:>9.0%}"
                f"{rejected[-1]:>9.0%}{float(abs(last['skew']).median()):>9.2f}"
                f"{float(last['kurtosis'].median()):>8.2f}"
                f"{float(last['ks_distance'].median()):>8.3f}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-output",
                        help="folder for the run stores and the report (stores are overwritten)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=10)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:  # pragma: no cover - make demo installs torch
        from tensorstats import demo_numpy

        demo_numpy.main(["--out", os.path.join(args.out, "run.zarr"), "--steps",
                         str(args.steps), "--every", str(args.every)])
        return
    os.makedirs(args.out, exist_ok=True)
    data = load_digits_split()
    paths = {init: os.path.join(args.out, f"{init}.zarr") for init in INITS}
    for init, path in paths.items():
        result = train(path, init, data, steps=args.steps, every=args.every)
        print(f"trained {init}: {args.steps} steps in {result['seconds']:.1f}s -> {path}")
    text = report(paths)
    report_path = os.path.join(args.out, "report.txt")
    with open(report_path, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print()
    print(text)
    print(f"\nreport written to {report_path}; open a run yourself with\n"
          f"  python -c \"import tensorstats as ts; print(ts.open_run('{paths['kaiming']}'))\"")


if __name__ == "__main__":
    main()

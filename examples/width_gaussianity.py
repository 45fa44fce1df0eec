"""Width and Gaussianity: the central limit theorem on the pre-activations of random MLPs.

Mean-field theory says that the pre-activation h_i = Σ_j W_ij x_j of a unit
whose fan-in is n becomes Gaussian as n grows (central limit theorem), with
Var[h] = n·Var[W]·E[x²]. This script measures how far that holds at
initialisation, against width, with tensorstats doing the recording and the
analysis.

What it does:

- Inputs: a fixed batch of real images, scikit-learn's bundled digits (64
  pixels, 0..16, scaled to [0, 1]; no download). Every model sees the same
  batch, so width (and the weight draw) is the only thing that changes.
- Models: ``fc1 = Linear(64, n) → ReLU → fc2 = Linear(n, n) → ReLU →
  fc3 = Linear(n, 10)`` for widths n = 16 … 4096, biases zero. The studied
  layer is ``fc2``: its fan-in is n, so the CLT acts over n terms, and its
  input is post-ReLU (non-zero mean). Three initialisations of every Linear:
  ``kaiming_normal`` (``nn.init.kaiming_normal_``: Gaussian weights),
  ``kaiming_uniform`` (``nn.init.kaiming_uniform_``: uniform weights, excess
  kurtosis −1.2) and ``sparse`` (Martens' 2010 sparse initialisation, as
  ``nn.init.sparse_``: 90% of each column zero, the rest Gaussian, scaled to
  Kaiming's variance 2/fan-in; one weight has excess kurtosis 3/density − 3,
  about +27, so it is the init where the CLT has the most to do). Several seeds per width.
- Recording: one run store per (init, width, seed), ``runs/<init>-w<width>-s<seed>.zarr``,
  written by ``tensorstats.torch.watch(model, rec, kinds=("weight",
  "feature", "input"), layers=("fc2",))`` for one forward pass at step 0
  (no backward pass: ``watch`` records weights, features and inputs from the
  forward hooks alone).
- Analysis, with the library only (``ts.open_run``, ``ts.normality``,
  ``ts.moments``, ``ts.meanfield``, xarray), of fc2's pre-activations:

  * pooled over units and samples (``by="step"``): the distribution the CLT
    statement is about for one draw of the weights, since across units the
    weights are independent draws. Shapiro-Wilk W and the KS distance come
    from ``ts.normality`` on a seeded subsample of at most 5000 values
    (``max_samples``); the KS distance is sup|F_n(z) − Φ(z)| with F_n the
    empirical CDF of that subsample *standardised by its own mean and std*,
    i.e. the distance to the best-fitting Gaussian. The excess kurtosis
    comes from ``ts.moments`` on every value (no subsample);
  * per unit, over samples (``by=("step", "channel")``), medians over
    units: this is a different distribution, one weight vector applied to
    the data set, and its shape is set by the inputs, not by the CLT;
  * the mean-field ratio observed/predicted variance, pooled and per unit,
    from ``ts.meanfield``;
  * the excess kurtosis expected over weight draws given the recorded
    input x and the recorded weights' own excess kurtosis κ_W (from
    ``ts.moments`` of the weight): with q_s = Σ_j x_js² for sample s,
    3·Var_s(q)/E_s[q]² (a mixture of inputs with different norms, which no
    width removes) plus κ_W·E_s[Σ_j x_js⁴]/E_s[q]² (the CLT term, about
    κ_W·6/n here: it falls like 1/width).

- Fit: the slope of log|excess kurtosis| against log width (``numpy.polyfit``
  over every width and seed), per init, with a plain-words verdict on
  whether it falls like 1/width.

Run:

    python examples/width_gaussianity.py                  # widths 16 64 256 1024 4096, 3 seeds
    python examples/width_gaussianity.py --quick          # widths 16 64 256, 1 seed, batch 128
    python examples/width_gaussianity.py --widths 32 512 --seeds 5 --batch 1024 --out here/

The default run takes 20 to 65 seconds on two (shared) cores, peaks at about
1 GB of memory and writes about 0.8 GB of run stores (fc2's weight at width
4096 is 64 MiB per store); ``--quick`` takes a few seconds.

Outputs, in ``--out`` (default ``width-gaussianity-output/``; a rerun
overwrites the stores and files of the same names and nothing else):

- ``runs/<init>-w<width>-s<seed>.zarr``: the run stores, only with ``--keep-runs``
  (about 0.8 GB at the default widths; otherwise removed once the outputs are written);
- ``distributions.png``: standardised pre-activations of fc2 at the smallest
  and the largest width (seed 0), per init, on shared bins, with N(0, 1)
  (``tensorstats.plot.distributions``);
- ``kurtosis_vs_width.png``: |excess kurtosis| against width, log-log, with
  the fitted power law, a 1/width reference, and the expected value and CLT
  term from above;
- ``metrics_vs_width.png``: 1 − Shapiro W, KS distance and the mean-field
  ratios against width, pooled and per unit;
- ``summary.md``: the tables, the fitted exponents with their verdicts, and
  conclusions drawn from this run's numbers.

The run is deterministic given ``--seeds`` (weights, data batch and the
subsamples of ``ts.normality`` are all seeded).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

import tensorstats as ts
import tensorstats.plot as tsplot
from tensorstats.torch import watch

INITS = ("kaiming_normal", "kaiming_uniform", "sparse")
LAYER = "fc2"
SPARSITY = 0.9
"""Fraction of each weight column set to zero by the sparse initialisation."""
DATA_SEED = 0
KS_NULL = 0.63
"""Mean KS distance of a Gaussian sample of size n is about 0.63/√n (docs/normality.md)."""
LOW, HIGH = -0.75, -1.25
"""Fitted exponents in [HIGH, LOW] count as 'roughly like 1/width'."""


# --------------------------------------------------------------------- data and models
def load_inputs(batch: int) -> torch.Tensor:
    """A fixed batch of digits, pixels scaled from 0..16 to [0, 1]: (batch, 64), float32."""
    from sklearn.datasets import load_digits

    images = load_digits().data.astype(np.float32) / 16.0
    if not 1 <= batch <= len(images):
        raise SystemExit(f"--batch must be between 1 and {len(images)}, got {batch}")
    rows = np.random.default_rng(DATA_SEED).choice(len(images), batch, replace=False)
    return torch.from_numpy(images[np.sort(rows)])


def sparse_init_(w: torch.Tensor, sparsity: float, generator: torch.Generator) -> torch.Tensor:
    """Martens' sparse initialisation, as ``nn.init.sparse_``, at Kaiming's variance 2/fan-in.

    Each column gets exactly ceil(sparsity·rows) zeros at random rows; the
    other entries are N(0, std²), with std chosen so that the variance of a
    weight is 2/fan-in, as for ``kaiming_normal_``. Vectorised and drawn from
    ``generator`` (``nn.init.sparse_`` loops over columns in Python, which
    takes seconds at width 4096, and draws the zero positions from torch's
    global generator).
    """
    rows, fan_in = w.shape
    zeros = math.ceil(sparsity * rows)
    density = 1.0 - zeros / rows
    with torch.no_grad():
        w.normal_(0.0, math.sqrt(2.0 / (fan_in * density)), generator=generator)
        if zeros:
            keys = torch.rand(w.shape, generator=generator)
            kth = keys.kthvalue(zeros, dim=0, keepdim=True).values
            w.masked_fill_(keys <= kth, 0.0)
    return w


def make_mlp(width: int, init: str, seed: int) -> nn.Sequential:
    """The MLP at initialisation; its weights depend only on (init, width, seed)."""
    state = np.random.SeedSequence([seed, width, INITS.index(init)]).generate_state(1)[0]
    gen = torch.Generator().manual_seed(int(state))
    model = nn.Sequential(OrderedDict(
        fc1=nn.Linear(64, width), relu1=nn.ReLU(),
        fc2=nn.Linear(width, width), relu2=nn.ReLU(),
        fc3=nn.Linear(width, 10)))
    for layer in (model.fc1, model.fc2, model.fc3):
        if init == "kaiming_normal":      # N(0, 2/fan_in)
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=gen)
        elif init == "kaiming_uniform":   # U(±√(6/fan_in)): the same variance
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu", generator=gen)
        else:
            sparse_init_(layer.weight, SPARSITY, gen)
        nn.init.zeros_(layer.bias)
    return model


def record(path: Path, model: nn.Module, x: torch.Tensor, attrs: dict) -> None:
    """One forward pass, recorded at step 0 (``mode="w"`` overwrites only a run store)."""
    with ts.Recorder(path, mode="w", attrs=attrs) as rec:
        w = watch(model, rec, kinds=("weight", "feature", "input"), layers=(LAYER,), every=1)
        with torch.no_grad():   # the forward hooks record all three kinds; no backward needed
            model(x)
        w.step(0)
        w.remove()


# ------------------------------------------------------------------------------ analysis
def analyse(path: Path) -> dict[str, float]:
    """The numbers of one store: fc2's pre-activations pooled and per unit, mean field."""
    run = ts.open_run(path)
    h = run["feature", LAYER]                                   # (step, channel, sample)
    # Pooled over units and samples: across units the weight rows are independent draws, so
    # this is the distribution the CLT speaks about (for one draw of the network).
    pooled = ts.normality(h, by="step", tests=("shapiro",))     # ≤ 5000 values per group
    # Per unit, over samples: one fixed weight vector applied to the data set; its shape is
    # set by the inputs, not by the CLT.
    unit = ts.normality(h, by=("step", "channel"), tests=("shapiro",))
    moments = ts.moments(h, by="step")                          # every value, exact
    mf = ts.meanfield(run, LAYER)
    kappa_w = ts.moments(run["weight", f"{LAYER}.weight"], by="step")["kurtosis"]
    x = run["input", LAYER].astype("float64")                   # (step, in channel, sample)
    q = (x ** 2).sum("channel")                                 # q_s = Σ_j x_js²
    mixture = 3 * q.var("sample") / q.mean("sample") ** 2
    clt = kappa_w * (x ** 4).sum("channel").mean("sample") / q.mean("sample") ** 2
    # A unit's variance over samples averages to Var[W]·Σ_j Var_s(x_j): the expected unit_ratio.
    unit_expected = x.var("sample").mean("channel") / (x ** 2).mean(("channel", "sample"))

    # Each result is computed on its own: dask.compute() over several of these Datasets at
    # once trips over an xarray/dask graph bug (pydata/xarray#11329) in this environment.
    pooled, unit, moments, mf = (d.isel(step=0).compute() for d in (pooled, unit, moments, mf))
    mixture, clt, kappa_w, unit_expected = (float(d.isel(step=0).compute())
                                            for d in (mixture, clt, kappa_w, unit_expected))
    return {
        "shapiro_w": float(pooled["statistic"].sel(test="shapiro")),
        "ks": float(pooled["ks_distance"]),
        "n_tested": int(pooled["n"]),
        "kurtosis": float(moments["kurtosis"]),
        "n_values": int(moments["count"]),
        "expected": mixture + clt,
        "mixture": mixture,
        "clt": clt,
        "weight_kurtosis": kappa_w,
        "ratio": float(mf["ratio"]),
        "unit_ratio": float(mf["unit_ratio"]),
        "unit_expected": unit_expected,
        "unit_w": float(unit["statistic"].sel(test="shapiro").median()),
        "unit_ks": float(unit["ks_distance"].median()),
        "unit_kurtosis": float(unit["kurtosis"].median()),
        "unit_n": int(unit["n"].median()),
    }


def fit_exponent(widths: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(b, a) of log|value| = a + b·log(width), least squares over the non-zero values."""
    keep = values != 0
    b, a = np.polyfit(np.log(widths[keep]), np.log(np.abs(values[keep])), 1)
    return float(b), float(a)


def verdict(b: float) -> str:
    if HIGH <= b <= LOW:
        return f"yes: it falls roughly like 1/width (exponent {b:.2f})"
    if LOW < b <= -0.25:
        return (f"no: it falls, but more slowly than 1/width (exponent {b:.2f}; "
                "1/√width would be −0.5)")
    if b > -0.25:
        return f"no: it hardly falls with width (exponent {b:.2f})"
    return f"no: it falls faster than 1/width (exponent {b:.2f})"


# ------------------------------------------------------------------------------- figures
def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def draw(results: list[dict], runs_dir: Path, widths: list[int], fits: dict,
         out: Path) -> list[Path]:
    files = []
    # 1. Standardised pre-activations at the smallest and the largest width, on shared bins.
    data = {}
    for width in (widths[0], widths[-1]):
        for init in INITS:
            h = ts.open_run(runs_dir / f"{init}-w{width}-s0.zarr")["feature", LAYER]
            m = ts.moments(h, by="step").compute()
            data[f"{init}, width {width}"] = (h - m["mean"]) / m["std"]
    edges = np.linspace(-6.0, 6.0, 97)
    fig = tsplot.distributions(data, steps=("first",), bins=edges, density=True, log=True,
                               title=f"{LAYER} pre-activations at init, standardised "
                                     "(seed 0, pooled over units and samples)")
    z = np.linspace(-6.0, 6.0, 400)
    for ax in fig.axes:
        ax.plot(z, np.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi), "k:", lw=1, label="N(0, 1)")
        ax.set_ylim(1e-6, 1.0)
        ax.set_xlabel("(h − mean) / std")
        ax.legend(fontsize="small")
    files.append(_save(fig, out / "distributions.png"))

    # 2. |excess kurtosis| against width, log-log.
    fig = Figure(figsize=(4.2 * len(INITS), 3.8), layout="constrained")
    axes = fig.subplots(1, len(INITS), squeeze=False)[0]
    w_arr = np.array(widths, dtype=float)
    for ax, init in zip(axes, INITS, strict=True):
        rows = [r for r in results if r["init"] == init]
        x = np.array([r["width"] for r in rows], dtype=float)
        k = np.array([r["kurtosis"] for r in rows])
        ax.scatter(x[k > 0], k[k > 0], color="C0", label="measured, > 0 (per seed)", zorder=3)
        ax.scatter(x[k <= 0], -k[k <= 0], facecolor="none", edgecolor="C0",
                   label="measured, < 0 (per seed)", zorder=3)
        b, a = fits[init]["b"], fits[init]["a"]
        ax.plot(w_arr, np.exp(a) * w_arr ** b, color="C0", label=f"fit: ∝ width^{b:.2f}")
        ax.plot(w_arr, np.exp(a) * w_arr[0] ** b * w_arr[0] / w_arr, color="grey", ls=":",
                label="∝ 1/width")
        for key, style, label in (("expected", "--", "|expected| (mixture + CLT)"),
                                  ("clt", "-.", "|CLT term|")):
            med = [np.median([r[key] for r in rows if r["width"] == w]) for w in widths]
            ax.plot(w_arr, np.abs(med), color="C1" if key == "expected" else "C2", ls=style,
                    label=label + ", median")
        shown = np.abs(np.concatenate([k, [r["expected"] for r in rows]]))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(0.3 * shown[shown > 0].min(), 3 * shown.max())
        ax.set_xlabel("width n (fan-in of fc2)")
        ax.set_ylabel("|excess kurtosis|")
        ax.set_title(init)
        ax.legend(fontsize="x-small")
    fig.suptitle(f"{LAYER} pre-activations pooled over units and samples")
    files.append(_save(fig, out / "kurtosis_vs_width.png"))

    # 3. Shapiro W, KS distance, mean-field ratios against width.
    fig = Figure(figsize=(13.0, 3.8), layout="constrained")
    ax_w, ax_ks, ax_mf = fig.subplots(1, 3)
    for i, init in enumerate(INITS):
        rows = [r for r in results if r["init"] == init]

        def med(key, rows=rows):
            return np.array([np.median([r[key] for r in rows if r["width"] == w])
                             for w in widths])

        c = f"C{i}"
        ax_w.plot(w_arr, 1 - med("shapiro_w"), "o-", color=c, label=f"{init}, pooled")
        ax_w.plot(w_arr, 1 - med("unit_w"), "s--", color=c, alpha=0.6,
                  label=f"{init}, per unit (median)")
        ax_ks.plot(w_arr, med("ks"), "o-", color=c, label=f"{init}, pooled")
        ax_ks.plot(w_arr, med("unit_ks"), "s--", color=c, alpha=0.6,
                   label=f"{init}, per unit (median)")
        ax_mf.plot(w_arr, med("ratio"), "o-", color=c, label=f"{init}, pooled")
        ax_mf.plot(w_arr, med("unit_ratio"), "s--", color=c, alpha=0.6,
                   label=f"{init}, per unit")
        for r in rows:
            ax_mf.plot(r["width"], r["ratio"], ".", color=c, alpha=0.5)
    n_pooled = np.array([next(r["n_tested"] for r in results if r["width"] == w)
                         for w in widths])
    n_unit = results[0]["unit_n"]
    ax_ks.plot(w_arr, KS_NULL / np.sqrt(n_pooled), color="k", ls=":",
               label="Gaussian-sample level, pooled")
    ax_ks.axhline(KS_NULL / math.sqrt(n_unit), color="grey", ls=":",
                  label=f"Gaussian-sample level, n = {n_unit}")
    ax_mf.axhline(1.0, color="k", lw=0.8)
    for ax, title, ylabel in ((ax_w, "Shapiro-Wilk", "1 − W"), (ax_ks, "KS distance",
                                                                "sup|F_n − Φ| (standardised)"),
                              (ax_mf, "mean-field ratio", "observed / predicted variance")):
        ax.set_xscale("log")
        ax.set_xlabel("width n")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend(fontsize="x-small")
    ax_w.set_yscale("log")
    ax_ks.set_yscale("log")
    fig.suptitle(f"{LAYER} pre-activations: medians over seeds (dots: single seeds)")
    files.append(_save(fig, out / "metrics_vs_width.png"))
    return files


# ------------------------------------------------------------------------------- summary
def _med(results: list[dict], init: str, width: int, key: str) -> float:
    return float(np.median([r[key] for r in results
                            if r["init"] == init and r["width"] == width]))


def _span(results: list[dict], init: str, width: int, key: str) -> tuple[float, float]:
    vals = [r[key] for r in results if r["init"] == init and r["width"] == width]
    return min(vals), max(vals)


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def conclusions(results: list[dict], widths: list[int], fits: dict, seeds: int) -> list[str]:
    """Plain-words conclusions; every number and every comparison is taken from ``results``."""
    lo, hi = widths[0], widths[-1]
    prev = widths[-2]
    m = lambda init, width, key: _med(results, init, width, key)  # noqa: E731
    over = f"medians over {seeds} seeds" if seeds > 1 else "one seed"
    out = []

    # 1. Shapiro W and KS distance of the pooled values.
    towards = all(m(i, hi, "shapiro_w") > m(i, lo, "shapiro_w")
                  and m(i, hi, "ks") < m(i, lo, "ks") for i in INITS)
    n_hi = int(m(INITS[0], hi, "n_tested"))
    level = KS_NULL / math.sqrt(n_hi)
    close = [i for i in INITS if m(i, hi, "ks") <= 2 * level]
    text = (f"Pooled over units and samples ({over}), the pre-activations "
            + ("move towards a Gaussian as width grows" if towards else
               "do not move towards a Gaussian at every init") + f": from width {lo} to "
            f"{hi} Shapiro W goes " + ", ".join(
                f"{m(i, lo, 'shapiro_w'):.4f} → {m(i, hi, 'shapiro_w'):.4f}" for i in INITS)
            + " and the KS distance " + ", ".join(
                f"{m(i, lo, 'ks'):.4f} → {m(i, hi, 'ks'):.4f}" for i in INITS)
            + f" ({', '.join(INITS)}); at width {hi} ")
    if len(close) == len(INITS):
        text += (f"every KS distance is within twice the {level:.4f} a Gaussian sample of "
                 f"{n_hi} values gives on average, so on this subsample the KS distance no "
                 "longer tells them from a Gaussian.")
    elif close:
        text += (f"only {_list(close)} {'is' if len(close) == 1 else 'are'} within twice "
                 f"the {level:.4f} a Gaussian sample of {n_hi} values gives on average.")
    else:
        text += (f"every KS distance is above twice the {level:.4f} a Gaussian sample of "
                 f"{n_hi} values gives on average.")
    out.append(text)

    # 2. The verdict on 1/width.
    like = [i for i in INITS if HIGH <= fits[i]["b"] <= LOW]
    unlike = [i for i in INITS if i not in like]
    expo = lambda names: ", ".join(f"{fits[i]['b']:.2f}" for i in names)  # noqa: E731
    if like and unlike:
        text = (f"The excess kurtosis falls roughly like 1/width only for {_list(like)} "
                f"(fitted exponent {expo(like)}), not for {_list(unlike)} ({expo(unlike)})")
    elif like:
        text = f"The excess kurtosis falls roughly like 1/width for every init ({expo(like)})"
    else:
        text = f"The excess kurtosis falls like 1/width for none of the inits ({expo(unlike)})"
    resid = [i for i in INITS if HIGH <= fits[i]["b_resid"] <= LOW]
    if resid:
        text += ("; with the mixture term (below) subtracted, the exponent is "
                 + ", ".join(f"{fits[i]['b_resid']:.2f} ({i})" for i in resid))
    out.append(text + ".")

    # 3. The CLT term against the scatter between seeds.
    clt = "; ".join(f"{m(i, lo, 'clt'):+.4f} → {m(i, hi, 'clt'):+.4f} for {i} "
                    f"(κ_W ≈ {m(i, hi, 'weight_kurtosis'):+.2f})" for i in INITS)
    measured = ", ".join("{:+.4f} … {:+.4f}".format(*_span(results, i, hi, "kurtosis"))
                         if seeds > 1 else f"{m(i, hi, 'kurtosis'):+.4f}" for i in INITS)
    out.append(f"From width {lo} to {hi} the CLT term κ_W·E[Σ_j x⁴]/E[q]², computed from the "
               f"recorded weights' excess kurtosis κ_W and the recorded inputs, goes {clt}; "
               f"at width {hi} the measured kurtosis is {measured} "
               + ("over seeds " if seeds > 1 else "") + f"({', '.join(INITS)}).")

    # 4. The mixture term: is there a floor, and does the measured kurtosis sit on it?
    mix = {w: [m(i, w, "mixture") for i in INITS] for w in (lo, prev, hi)}
    change = abs(np.mean(mix[hi]) / np.mean(mix[prev]) - 1)
    shape = ("levels off" if change < 0.2 else "is still falling") + (
        f" ({min(mix[prev]):.4f} … {max(mix[prev]):.4f} at width {prev}, "
        f"{min(mix[hi]):.4f} … {max(mix[hi]):.4f} at width {hi})")
    within = [i for i in INITS
              if _span(results, i, hi, "kurtosis")[0] <= m(i, hi, "expected")
              <= _span(results, i, hi, "kurtosis")[1]]
    text = (f"The mixture term 3·Var(q)/E[q]², from inputs of different norms, is "
            f"{min(mix[lo]):.4f} … {max(mix[lo]):.4f} at width {lo} and {shape}")
    if seeds > 1 and within:
        text += (f"; at width {hi} the seeds' measured kurtosis brackets the expected "
                 f"value (mixture + CLT) for {_list(within)}")
    elif seeds == 1:
        gaps = ", ".join(f"{abs(m(i, hi, 'kurtosis') - m(i, hi, 'expected')):.4f} ({i})"
                         for i in INITS)
        text += f"; at width {hi} the measured kurtosis is this far from the expected: {gaps}"
    else:
        text += f"; at width {hi} no init's seeds bracket the expected value (mixture + CLT)"
    out.append(text + ".")

    # 5. Mean-field ratios.
    r_lo = [r["ratio"] for r in results if r["width"] == lo]
    r_hi = [r["ratio"] for r in results if r["width"] == hi]
    u_hi = [r["unit_ratio"] for r in results if r["width"] == hi]
    e_hi = [r["unit_expected"] for r in results if r["width"] == hi]
    out.append(
        f"The mean-field ratio (pooled observed variance / n·Var[W]·E[x²]) spans "
        f"{min(r_lo):.3f} … {max(r_lo):.3f} over inits and seeds at width {lo} and "
        f"{min(r_hi):.3f} … {max(r_hi):.3f} at width {hi}; the per-unit ratio is "
        f"{min(u_hi):.3f} … {max(u_hi):.3f} at width {hi}, as mean_j Var_s(x_j)/E[x²] of the "
        f"recorded inputs predicts ({min(e_hi):.3f} … {max(e_hi):.3f}): a unit's variance "
        "over samples leaves out the spread of the unit means W_i·E[x], which the non-zero "
        "mean of the post-ReLU inputs puts into the pooled variance.")

    # 6. Per unit, over samples.
    n_unit = results[0]["unit_n"]
    dense = [i for i in INITS if i != "sparse"]
    still = [i for i in dense if abs(m(i, hi, "unit_w") - m(i, lo, "unit_w")) < 0.005]
    text = (f"Per unit over the {n_unit} samples (a different distribution: one weight "
            f"vector applied to the digits), median Shapiro W goes " + ", ".join(
                f"{m(i, lo, 'unit_w'):.4f} → {m(i, hi, 'unit_w'):.4f}" for i in INITS)
            + " and median KS " + ", ".join(
                f"{m(i, lo, 'unit_ks'):.4f} → {m(i, hi, 'unit_ks'):.4f}" for i in INITS)
            + f" ({', '.join(INITS)}; a Gaussian sample of {n_unit} gives about "
            f"{KS_NULL / math.sqrt(n_unit):.4f})")
    if still == dense and dense:
        terms = lo - math.ceil(SPARSITY * lo)
        text += (f": for {_list(dense)} width leaves it where the input data put it, and "
                 f"only the sparse units, which sum on average {terms} non-zero "
                 f"term{'s' * (terms != 1)} each at width {lo}, change shape with width")
    out.append(text + ".")
    return out


def write_summary(results: list[dict], widths: list[int], fits: dict,
                  args: argparse.Namespace, out: Path) -> Path:
    seeds = args.seeds
    lines = [
        "# Width and Gaussianity of pre-activations at initialisation",
        "",
        f"`examples/width_gaussianity.py`: MLP 64 → n → n → 10 (ReLU, biases zero), layer "
        f"`{LAYER}` (fan-in n), widths {', '.join(map(str, widths))}, {seeds} seed"
        f"{'s' * (seeds > 1)} per width and init, one forward pass on {args.batch} digits "
        "(pixels in [0, 1], the same batch for every model). Stores: `runs/` "
        "(with `--keep-runs`).",
        "",
        "Columns, pooled over units and samples of one network: **Shapiro W** and **KS** "
        "(`ts.normality(..., by=\"step\")` on a seeded subsample of at most 5000 values; KS is "
        "sup|F_n(z) − Φ(z)| after standardising the subsample by its own mean and std, i.e. "
        "the distance to the best-fitting Gaussian), **kurtosis** (excess, `ts.moments` over "
        "every value), **expected** = mixture + CLT (the excess kurtosis expected over weight "
        "draws given the recorded input: mixture = 3·Var_s(q)/E[q]² with q_s = Σ_j x_js², "
        "CLT = κ_W·E[Σ_j x_js⁴]/E[q]² with κ_W the recorded weights' excess kurtosis), "
        "**mf ratio** and **unit ratio** (`ts.meanfield`: pooled and per-unit observed "
        "variance over n·Var[W]·E[x²]). Medians over seeds; the kurtosis also as min … max.",
        "",
    ]
    for init in INITS:
        lines += [f"## {init}", "",
                  "| width | Shapiro W | KS | kurtosis | kurtosis min … max | expected | "
                  "CLT term | mf ratio | unit ratio |",
                  "| ---: | ---: | ---: | ---: | :---: | ---: | ---: | ---: | ---: |"]
        for w in widths:
            k0, k1 = _span(results, init, w, "kurtosis")
            m = lambda key, w=w, init=init: _med(results, init, w, key)  # noqa: E731
            lines.append(f"| {w} | {m('shapiro_w'):.4f} | {m('ks'):.4f} | "
                         f"{m('kurtosis'):+.4f} | {k0:+.4f} … {k1:+.4f} | "
                         f"{m('expected'):+.4f} | {m('clt'):+.4f} | {m('ratio'):.3f} | "
                         f"{m('unit_ratio'):.3f} |")
        lines.append("")
    n_unit = results[0]["unit_n"]
    lines += ["## Per unit, over samples", "",
              f"`ts.normality(..., by=(\"step\", \"channel\"))`: one group per unit, its "
              f"{n_unit} values over the batch; medians over units, then over seeds. This is "
              "one fixed weight vector applied to the data, so it reflects the input data, "
              "not the CLT.", "",
              "| init | width | median unit Shapiro W | median unit KS | "
              "median unit kurtosis |",
              "| :--- | ---: | ---: | ---: | ---: |"]
    for init in INITS:
        for w in widths:
            lines.append(f"| {init} | {w} | {_med(results, init, w, 'unit_w'):.4f} | "
                         f"{_med(results, init, w, 'unit_ks'):.4f} | "
                         f"{_med(results, init, w, 'unit_kurtosis'):+.4f} |")
    lines += ["", "## Does the excess kurtosis fall like 1/width?", "",
              "Least-squares fit of log|kurtosis| = a + b·log(width) over every width and "
              "seed (`numpy.polyfit`); 1/width is b = −1.", "",
              "The other two columns fit the same way |kurtosis − mixture term| (what is left "
              "for the CLT and for the scatter between seeds) and the CLT term itself (— for "
              "Gaussian weights, whose CLT term is zero).", "",
              "| init | fitted exponent b | verdict | b of kurtosis − mixture | b of CLT term |",
              "| :--- | ---: | :--- | ---: | ---: |"]
    for init in INITS:
        f = fits[init]
        clt = "—" if f["b_clt"] is None else f"{f['b_clt']:.2f}"
        lines.append(f"| {init} | {f['b']:.2f} | {f['verdict']} | {f['b_resid']:.2f} | "
                     f"{clt} |")
    lines += ["", "## Conclusions", ""]
    lines += [f"{i}. {text}" for i, text in enumerate(conclusions(results, widths, fits, seeds),
                                                      start=1)]
    lines += ["", "## All runs", "",
              "| init | width | seed | Shapiro W | KS | n tested | kurtosis | n values | "
              "expected | mixture term | CLT term | weight kurtosis | mf ratio | unit ratio | "
              "unit ratio expected |",
              "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['init']} | {r['width']} | {r['seed']} | {r['shapiro_w']:.4f} | "
                     f"{r['ks']:.4f} | {r['n_tested']} | {r['kurtosis']:+.4f} | "
                     f"{r['n_values']} | {r['expected']:+.4f} | {r['mixture']:+.4f} | "
                     f"{r['clt']:+.4f} | {r['weight_kurtosis']:+.3f} | {r['ratio']:.3f} | "
                     f"{r['unit_ratio']:.3f} | {r['unit_expected']:.3f} |")
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="width-gaussianity-output", help="output folder")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64, 256, 1024, 4096],
                   help="widths n of the hidden layers (16 64 256 1024 4096)")
    p.add_argument("--seeds", type=int, default=3, help="weight draws per width and init (3)")
    p.add_argument("--batch", type=int, default=512, help="digits in the batch (512)")
    p.add_argument("--keep-runs", action="store_true",
                   help="keep the run stores (about 0.8 GB at the default widths; by default "
                        "they are removed once the summary and figures are written)")
    p.add_argument("--quick", action="store_true",
                   help="widths 16 64 256, 1 seed, batch 128: a smoke run of a few seconds")
    args = p.parse_args(argv)
    if args.quick:
        args.widths, args.seeds, args.batch = [16, 64, 256], 1, 128
    widths = sorted(set(args.widths))
    if len(widths) < 2 or widths[0] < 2 or args.seeds < 1:
        p.error("need at least two widths >= 2 and --seeds >= 1")

    start = time.perf_counter()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    out = Path(args.out)
    runs_dir = out / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    x = load_inputs(args.batch)

    results = []
    for width in widths:
        for init in INITS:
            for seed in range(args.seeds):
                path = runs_dir / f"{init}-w{width}-s{seed}.zarr"
                model = make_mlp(width, init, seed)
                record(path, model, x, {"init": init, "width": width, "seed": seed,
                                        "batch": args.batch, "data": "sklearn digits / 16"})
                results.append({"init": init, "width": width, "seed": seed, **analyse(path)})
                del model
        k = [r["kurtosis"] for r in results if r["width"] == width]
        print(f"width {width:5d}: recorded and analysed {len(INITS) * args.seeds} stores; "
              f"pooled excess kurtosis {min(k):+.4f} … {max(k):+.4f}  "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)

    fits = {}
    for init in INITS:
        rows = [r for r in results if r["init"] == init]
        w = np.array([r["width"] for r in rows], dtype=float)
        k = np.array([r["kurtosis"] for r in rows])
        b, a = fit_exponent(w, k)
        b_resid, _ = fit_exponent(w, k - np.array([r["mixture"] for r in rows]))
        # For Gaussian weights the CLT term is zero up to the noise of the measured κ_W.
        gaussian = abs(np.median([r["weight_kurtosis"] for r in rows])) < 0.1
        b_clt = None if gaussian else fit_exponent(w, np.array([r["clt"] for r in rows]))[0]
        fits[init] = {"b": b, "a": a, "verdict": verdict(b), "b_resid": b_resid,
                      "b_clt": b_clt}

    summary = write_summary(results, widths, fits, args, out)
    files = draw(results, runs_dir, widths, fits, out)
    print("\nDoes the excess kurtosis of the pooled pre-activations fall like 1/width?")
    for init in INITS:
        print(f"  {init:16s} fitted exponent {fits[init]['b']:+.2f}: {fits[init]['verdict']}")
    text = summary.read_text()
    print("\n" + text.split("## Conclusions\n")[1].split("\n## All runs")[0].strip())
    if args.keep_runs:
        kept = f" and {len(results)} run stores in {runs_dir.resolve()}/"
    else:
        for r in results:  # only the stores this run wrote
            shutil.rmtree(runs_dir / f"{r['init']}-w{r['width']}-s{r['seed']}.zarr")
        if not any(runs_dir.iterdir()):
            runs_dir.rmdir()
        kept = " (run stores removed; --keep-runs keeps them)"
    print(f"\nwrote {summary.resolve()}, {', '.join(f.name for f in files)}{kept}  "
          f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

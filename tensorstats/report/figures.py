"""The report's figures, one page of layers at a time (matplotlib, no pyplot).

Per-layer figures hold at most one page of layers (``per_page``), so a
100-layer run gives several readable figures, never one with 100 panels.
Figures of several runs are drawn with shared y limits, so the runs' columns
compare at a glance. Most figures come from :mod:`tensorstats.plot`; the loss
curve is drawn here (plot has no function for scalars).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from ..dims import RUN, STEP
from .analysis import NORMALITY_TEST, SHIFT_METRIC, RunAnalysis
from .correlations import loss_names

TRAJECTORY_VARS = ("std", "skew", "kurtosis", "nonfinite")
"""Rows of the trajectory figures; ``nonfinite`` is ``nan_count + inf_count``."""

HEATMAP_VAR = "ks_distance"
FDR_LEVEL = 0.05
TRAJECTORY_SIZE = (6.5, 7.5)
EMISSION_SIZE = (8.0, 3.2)
LOG_DECADES = 2.0
"""The loss axis is logarithmic when its positive values span at least this many decades."""


def _row_label(layer: str, run: str, several: bool) -> str:
    return f"{layer} / {run}" if several else layer


def share_y(figures: Sequence[Figure], n_axes: int) -> None:
    """Give the first ``n_axes`` axes of every figure the same y limits, row by row."""
    if len(figures) < 2:
        return
    for i in range(n_axes):
        axes = [fig.axes[i] for fig in figures if len(fig.axes) > i]
        if any(ax.get_yscale() != "linear" for ax in axes):
            continue
        lows, highs = zip(*(ax.get_ylim() for ax in axes), strict=True)
        for ax in axes:
            ax.set_ylim(min(lows), max(highs))


def loss_figure(analyses: Sequence[RunAnalysis]) -> Figure | None:
    """Every ``loss*`` scalar of every run on one axes; log y when it spans decades."""
    from ..plot._common import legend, new_figure

    series = [(a.name, name, a.scalars[name]) for a in analyses
              for name in loss_names(list(a.scalars))]
    if not series:
        return None
    fig, axes = new_figure(1, 1, width=8.0, height=3.6)
    ax = axes[0, 0]
    styles = ("-", "--", ":", "-.")
    names = sorted({name for _, name, _ in series}, key=lambda n: (n != "loss", n))
    runs = [a.name for a in analyses]
    drawn = []
    for run, name, da in series:
        x, y = np.asarray(da[STEP].values), np.asarray(da.values, dtype=float)
        label = " / ".join(p for p, show in ((run, len(runs) > 1), (name, len(names) > 1))
                           if show) or name
        (line,) = ax.plot(x, y, label=label, color=f"C{runs.index(run) % 10}",
                          linestyle=styles[names.index(name) % len(styles)], linewidth=1.2)
        drawn.append(line)
    values = np.concatenate([np.asarray(da.values, float) for _, _, da in series])
    positive = values[np.isfinite(values) & (values > 0)]
    if (positive.size and positive.size == np.isfinite(values).sum()
            and np.log10(positive.max() / positive.min()) >= LOG_DECADES):
        ax.set_yscale("log")
    ax.set_xlabel(STEP)
    ax.set_ylabel("loss")
    legend(ax, drawn)
    return fig


def _with_nonfinite(ds: xr.Dataset) -> xr.Dataset:
    out = ds[[v for v in TRAJECTORY_VARS if v != "nonfinite"]].copy()
    out["nonfinite"] = (ds["nan_count"] + ds["inf_count"]).astype(float)
    return out


def _blank(template: xr.Dataset, names: Sequence[str]) -> xr.Dataset:
    """All-NaN variables ``names`` over the steps of ``template``: keeps colours in step."""
    nan = xr.full_like(template[STEP], np.nan, dtype=float).drop_vars(STEP, errors="ignore")
    return xr.Dataset({n: nan for n in names}, coords={STEP: template[STEP].values})


def trajectory_figures(analyses: Sequence[RunAnalysis], kind: str,
                       page: Sequence[str]) -> list[Figure]:
    """One figure per run: std, skew, excess kurtosis and NaN+Inf count over steps, one line
    per layer of ``page``; y limits shared across runs."""
    from ..plot import trajectories

    figures = []
    for a in analyses:
        present = {layer: _with_nonfinite(a.moments[kind, layer]) for layer in page
                   if (kind, layer) in a.moments}
        if not present:
            continue
        template = next(iter(present.values()))
        results = {layer: present.get(layer, _blank(template, TRAJECTORY_VARS))
                   for layer in page}
        fig = trajectories(results, list(TRAJECTORY_VARS), title=a.name)
        fig.set_size_inches(*TRAJECTORY_SIZE)
        for ax in fig.axes[1:len(TRAJECTORY_VARS)]:  # one legend, on the top axes
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        fig.axes[len(TRAJECTORY_VARS) - 1].set_ylabel("NaN + Inf count")
        fig.axes[2].set_ylabel("excess kurtosis")
        figures.append(fig)
    share_y(figures, len(TRAJECTORY_VARS))
    return figures


def heatmap_figure(analyses: Sequence[RunAnalysis], page: Sequence[str]) -> Figure | None:
    """The normality effect size (KS distance, median over channels) per layer (and run) and
    step, FDR-significant cells dotted."""
    from ..plot import normality_heatmap

    several = len(analyses) > 1
    rows = {_row_label(layer, a.name, several): a.normality[layer]
            for layer in page for a in analyses if layer in a.normality}
    if not rows:
        return None
    return normality_heatmap(rows, HEATMAP_VAR, test=NORMALITY_TEST, fdr=FDR_LEVEL)


def _common_steps(arrays: Sequence[xr.DataArray]) -> list:
    common = set(arrays[0][STEP].values.tolist())
    for da in arrays[1:]:
        common &= set(da[STEP].values.tolist())
    return sorted(common)


def _distribution_data(analyses: Sequence[RunAnalysis], kind: str,
                       layer: str) -> dict[str, xr.DataArray]:
    """``{panel: data}`` at two steps each: one panel with a ``run`` dim at the first and last
    step the runs share, when their tensors have the same shape; else one panel per run at its
    own first and last step."""
    arrays = {a.name: a.run[kind, layer] for a in analyses if (kind, layer) in a.run}
    if not arrays:
        return {}
    first = next(iter(arrays.values()))
    ends = {name: da.isel({STEP: sorted({0, da.sizes[STEP] - 1})})
            for name, da in arrays.items()}
    if len(arrays) == 1:
        return {layer: ends[next(iter(ends))]}
    same = all({d: n for d, n in da.sizes.items() if d != STEP}
               == {d: n for d, n in first.sizes.items() if d != STEP} for da in arrays.values())
    common = _common_steps(list(arrays.values()))
    if not (same and common):
        return {f"{layer} / {name}": da for name, da in ends.items()}
    steps = list(dict.fromkeys([common[0], common[-1]]))
    picked = [da.sel({STEP: steps}) for da in arrays.values()]
    return {layer: xr.concat(picked, dim=pd.Index(list(arrays), name=RUN), join="override",
                             combine_attrs="drop_conflicts", coords="minimal",
                             compat="override")}


def distribution_figure(analyses: Sequence[RunAnalysis], kind: str,
                        page: Sequence[str]) -> Figure | None:
    """Histograms of each layer of ``page`` at the first and last recorded step, every run on
    the same bins (one panel per layer, or per layer and run when the runs' shapes differ or
    they share no step)."""
    from ..plot import distributions

    panels = {}
    for layer in page:
        panels.update(_distribution_data(analyses, kind, layer))
    if not panels:
        return None
    return distributions(panels, steps=("first", "last"), log=True)


def shift_figures(analyses: Sequence[RunAnalysis], page: Sequence[str]) -> list[Figure]:
    """One figure per run: each layer's Wasserstein-1 distance from its first step (median
    over channels, IQR band); y limits shared across runs."""
    from ..plot import shift

    figures = []
    for a in analyses:
        present = {layer: a.shift[layer] for layer in page if layer in a.shift}
        if not present:
            continue
        template = next(iter(present.values()))
        results = {layer: present.get(layer, _blank(template, (SHIFT_METRIC,)))
                   for layer in page}
        figures.append(shift(results, SHIFT_METRIC, title=a.name))
    share_y(figures, 1)
    return figures


def emission_figure(analysis: RunAnalysis, layer: str, source: str) -> Figure:
    """The seed paper's emission/absorption box plots of one layer at its last step."""
    from ..layers import emission_absorption
    from ..plot import emission_absorption as draw

    ds = emission_absorption(analysis.run, layer, source=source)
    fig = draw(ds, k=16, step="last", logy=True, title=f"{analysis.name}: {layer}")
    fig.set_size_inches(*EMISSION_SIZE)
    return fig


def emission_source(run: object) -> str | None:
    """``"captured"`` when the run holds the emission and absorption kinds, ``"offline"`` when
    it holds ``feature_grad`` and ``weight``, else None."""
    kinds = set(run.kinds)
    if {"emission", "absorption"} <= kinds:
        return "captured"
    if {"feature_grad", "weight"} <= kinds:
        return "offline"
    return None


def emission_layers(run: object, source: str) -> list[str]:
    """The layers ``source`` can give emission/absorption for."""
    if source == "captured":
        return sorted(set(run.layers("emission")) & set(run.layers("absorption")))
    return run.layers("feature_grad")

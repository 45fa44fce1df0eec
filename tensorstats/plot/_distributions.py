"""``distributions``: histograms of raw tensor values at chosen steps, on shared bins."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ..dims import RUN, STEP
from ._common import (
    as_layers,
    check_bool,
    check_title,
    compute,
    finish,
    new_figure,
    pick_step,
    with_steps,
)

FN = "distributions"
NCOLS = 3
LINESTYLES = ("-", "--", ":", "-.")
"""One per run: a step keeps its colour in every run."""


@dataclass(frozen=True)
class _Sample:
    """The values of one (run, step) of a panel, and what was left out of them."""

    label: str
    run: int
    step: int
    finite: np.ndarray
    nan: int
    inf: int


def _steps(data: xr.DataArray, layer: str | None, steps: object) -> list:
    where = "data" if layer is None else f"data[{layer!r}]"
    if STEP not in data.dims:
        raise ValueError(f"{FN}: {where} has no {STEP!r} dim; its dims are {list(data.dims)}")
    wanted = [steps] if isinstance(steps, (str, int, np.integer)) else steps
    wanted = wanted.tolist() if isinstance(wanted, np.ndarray) else wanted
    if not isinstance(wanted, Sequence) or not wanted:
        raise TypeError(f"{FN}: steps must be a non-empty sequence of step labels, 'first' "
                        f"or 'last', got {steps!r}")
    labels = np.asarray(data[STEP].values)
    picked = [pick_step(FN, labels, s, arg="steps", of=where) for s in wanted]
    return list(dict.fromkeys(picked))  # "first" and "last" of a one-step series are one


def _edges(bins: object, range_: object) -> np.ndarray | int:
    """Fixed edges from an array ``bins``, or the (checked) number of bins."""
    if isinstance(bins, (int, np.integer)) and not isinstance(bins, (bool, np.bool_)):
        if bins < 1:
            raise ValueError(f"{FN}: bins must be a positive int or an array of edges, "
                             f"got {bins}")
        if range_ is None:
            return int(bins)
        if (not isinstance(range_, Sequence) or len(range_) != 2
                or not all(isinstance(v, (int, float, np.integer, np.floating)) for v in range_)
                or not np.all(np.isfinite(range_)) or not range_[0] < range_[1]):
            raise ValueError(f"{FN}: range must be (low, high), finite with low < high, "
                             f"got {range_!r}")
        return np.linspace(float(range_[0]), float(range_[1]), int(bins) + 1)
    edges = np.asarray(bins, dtype=float) if isinstance(bins, (Sequence, np.ndarray)) else None
    if (edges is None or edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges))
            or not np.all(np.diff(edges) > 0)):
        raise ValueError(f"{FN}: bins must be a positive int or a 1-D array of at least two "
                         f"finite, strictly increasing edges, got {bins!r}")
    if range_ is not None:
        raise ValueError(f"{FN}: give range only with a number of bins; bins are already "
                         f"edges {edges[0]}..{edges[-1]}")
    return edges


def _samples(data: xr.DataArray, steps: list) -> list[_Sample]:
    """One sample per (run, step) of ``data`` (in memory), labelled for the legend."""
    runs = list(data[RUN].values) if RUN in data.dims else [None]
    out = []
    for i, run in enumerate(runs):
        for j, step in enumerate(steps):
            sel = {STEP: step} if run is None else {RUN: run, STEP: step}
            values = np.asarray(data.sel(sel).values, dtype=float).ravel()
            finite = np.isfinite(values)
            label = f"step {step}" if run is None else f"{run} / step {step}"
            out.append(_Sample(label, i, j, values[finite], int(np.isnan(values).sum()),
                               int(np.isinf(values).sum())))
    return out


def _panel_edges(samples: list[_Sample], bins: np.ndarray | int) -> np.ndarray:
    """The edges of a panel: fixed ones, or ``bins`` over its finite min..max."""
    if isinstance(bins, np.ndarray):
        return bins
    finite = [s.finite for s in samples if s.finite.size]
    lo, hi = ((min(f.min() for f in finite), max(f.max() for f in finite)) if finite
              else (0.0, 1.0))
    if lo == hi:  # as numpy.histogram: a constant sample gets a unit-wide range around it
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def _label(sample: _Sample, outside: int) -> str:
    left_out = [f"{n} {what}" for n, what in ((sample.nan, "NaN"), (sample.inf, "Inf"),
                                              (outside, "outside the bins")) if n]
    return sample.label + (f" ({', '.join(left_out)})" if left_out else "")


def distributions(data: xr.DataArray | Mapping[str, xr.DataArray], *,
                  steps: Sequence[object] = ("first", "last"), bins: int | Sequence[float] = 60,
                  range: tuple[float, float] | None = None, log: bool = False,
                  density: bool = False, title: str | None = None) -> Figure:
    """Histograms of raw values at chosen steps, on the same bins for every step and run.

    Each panel (one per layer) uses one set of bin edges for all its
    histograms, so the histograms of two steps, or of two runs, can be
    compared bin by bin and overlaid.

    Parameters
    ----------
    data : DataArray or mapping {layer: DataArray}
        Raw values with a ``step`` dim, e.g. ``run["weight", "conv1.weight"]``;
        with a leading ``run`` dim (``runs[kind, layer]``) one histogram per
        run and step. Every other dim is pooled.
    steps : sequence of step labels, "first" or "last"
        The steps to draw (a single label is accepted too). A step picked
        twice (``"first"`` and ``"last"`` of a one-step series) is drawn once.
    bins : int or array of edges
        An array is used as the edges of every panel. An int is the number
        of equal-width bins over ``range`` if given, else over the finite
        min..max of all values drawn in the panel (all its steps and runs).
    range : (float, float), optional
        Low and high edge, with an int ``bins``.
    log : bool
        Log scale for the counts.
    density : bool
        Normalise each histogram to unit area (over its finite values
        inside the bins), as :func:`numpy.histogram`.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per layer; one ``ax.stairs`` artist (a ``StepPatch``, which
        carries its edges) per (run, step), labelled ``"step N"`` or
        ``"run / step N"``, coloured by step and dashed by run. Values left
        out are counted in the label: ``"step 0 (3 NaN, 1 Inf)"``, and
        ``"k outside the bins"`` for finite values outside fixed edges. Each
        axes holds its edges in ``ax.tensorstats_bins``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from tensorstats.plot import distributions
    >>> rng = np.random.default_rng(0)
    >>> w = rng.normal(size=(3, 4, 50)) * np.array([1.0, 2.0, 3.0])[:, None, None]
    >>> da = xr.DataArray(w, dims=("step", "channel", "dim_1"), coords={"step": [0, 5, 10]})
    >>> fig = distributions(da, bins=20)
    >>> ax = fig.axes[0]
    >>> len(ax.patches), len(ax.tensorstats_bins)
    (2, 21)
    >>> [p.get_label() for p in ax.patches]
    ['step 0', 'step 10']
    """
    log = check_bool(FN, "log", log)
    density = check_bool(FN, "density", density)
    title = check_title(FN, title)
    bins = _edges(bins, range)
    layers, mapping = as_layers(FN, data, (xr.DataArray,), arg="data")
    for layer, da in layers.items():
        if da.dtype.kind not in "biuf":
            where = "data" if layer is None else f"data[{layer!r}]"
            raise TypeError(f"{FN}: {where} must hold real numbers, got dtype {da.dtype}")
    layers = {layer: with_steps(da) for layer, da in layers.items()}
    picked = {layer: _steps(da, layer, steps) for layer, da in layers.items()}
    selected = compute(*(da.sel({STEP: picked[layer]}) for layer, da in layers.items()))

    ncols = min(len(layers), NCOLS)
    nrows = math.ceil(len(layers) / ncols)
    fig, axes = new_figure(nrows, ncols, width=4.2 * ncols + 0.6, height=3.4 * nrows + 0.4)
    flat = axes.ravel()
    for ax in flat[len(layers):]:
        ax.remove()
    for ax, layer, da in zip(flat, layers, selected, strict=False):
        samples = _samples(da, picked[layer])
        edges = _panel_edges(samples, bins)
        for sample in samples:
            counts, _ = np.histogram(sample.finite, edges)
            outside = sample.finite.size - int(counts.sum())
            if density:
                widths = np.diff(edges)
                total = counts.sum()
                counts = counts / (total * widths) if total else counts.astype(float)
            ax.stairs(counts, edges, label=_label(sample, outside), color=f"C{sample.step % 10}",
                      linestyle=LINESTYLES[sample.run % len(LINESTYLES)])
        ax.tensorstats_bins = edges
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("value")
        ax.set_ylabel("density" if density else "count")
        name = layer if mapping else da.name
        if name is not None:
            ax.set_title(str(name))
        ax.legend(fontsize="small")
    return finish(fig, title)

"""``trajectories``: per-step statistics (moments, ...) as lines over training steps."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ..dims import STEP
from ._common import (
    MAX_LEGEND,
    as_layers,
    check_bool,
    check_title,
    compute,
    finish,
    legend,
    new_figure,
    variable,
    where,
)

FN = "trajectories"


@dataclass(frozen=True)
class _Line:
    """One line to draw: its label, steps and values."""

    label: str
    x: np.ndarray
    y: np.ndarray


def _vars(var: object) -> list[str]:
    names = [var] if isinstance(var, str) else var
    if not isinstance(names, Sequence) or not names or not all(isinstance(v, str) for v in names):
        raise TypeError(f"{FN}: var must be a variable name or a non-empty list of them, "
                        f"got {var!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{FN}: var lists a variable twice: {list(names)}")
    return list(names)


def _as_dataset(layer: str | None, result: xr.Dataset | xr.DataArray,
                names: list[str]) -> tuple[xr.Dataset, list[str]]:
    """The variables ``names`` of ``result`` (a DataArray stands for itself)."""
    if isinstance(result, xr.Dataset):
        return xr.Dataset({v: variable(FN, result, v, layer) for v in names}), names
    if len(names) > 1:
        raise ValueError(f"{FN}: var lists {len(names)} variables but the results"
                         f"{where(layer)} are one DataArray")
    name = str(result.name) if result.name is not None else names[0]
    return result.to_dataset(name=name), [name]


def _hue_dim(layer: str | None, da: xr.DataArray, hue: Hashable | None,
             mapping: bool) -> Hashable | None:
    """The dim whose labels become separate lines; ValueError if another dim remains."""
    if STEP not in da.dims:
        raise ValueError(f"{FN}: variable {da.name!r}{where(layer)} has no {STEP!r} dim; "
                         f"its dims are {list(da.dims)}")
    others = [d for d in da.dims if d != STEP]
    if hue is not None:
        if hue not in others:
            raise ValueError(f"{FN}: hue={hue!r} is not a dim of variable {da.name!r}"
                             f"{where(layer)}; its non-step dims are {others}")
        others.remove(hue)
    elif len(others) == 1 and not mapping:
        hue = others.pop()
    if others:
        raise ValueError(
            f"{FN}: variable {da.name!r}{where(layer)} has dims {list(da.dims)}: one line per "
            f"{STEP!r} needs every other dim drawn as hue or reduced; pass hue= one of "
            f"{[d for d in da.dims if d != STEP]}"
            + (" (one line per label)" if not mapping else "")
            + " or reduce first, e.g. ts.moments(da, by=('step',)) or result.median('channel')")
    return hue


def _lines(ds: xr.Dataset, layer: str | None, hue: Hashable | None,
           mapping: bool) -> tuple[list[list[_Line]], Hashable | None]:
    """The lines of each variable of ``ds`` (in memory), in the order of its variables."""
    panels: list[list[_Line]] = []
    hue_dim = None
    for v, da in ds.data_vars.items():
        hue_dim = _hue_dim(layer, da, hue, mapping)
        x = np.asarray(da[STEP].values)
        if hue_dim is None:
            label = layer if layer is not None else str(v)
            panels.append([_Line(label, x, np.asarray(da.values, dtype=float))])
            continue
        rows = da.transpose(hue_dim, STEP)
        panels.append([_Line(f"{label}" if layer is None else f"{layer} / {label}", x,
                             np.asarray(row, dtype=float))
                       for label, row in zip(rows[hue_dim].values, rows.values, strict=True)])
    return panels, hue_dim


def _check_loss(loss: object) -> xr.DataArray | None:
    if loss is None:
        return None
    if not isinstance(loss, xr.DataArray):
        raise TypeError(f"{FN}: loss must be an xarray.DataArray over {STEP!r} (e.g. "
                        f"run.scalars['loss']), got {type(loss).__name__}")
    if STEP not in loss.dims or loss.ndim > 2:
        raise ValueError(f"{FN}: loss must have dims ({STEP!r},) or ({STEP!r}, one other) "
                         f"such as run, got {list(loss.dims)}")
    return loss.transpose(STEP, ...)


def _draw_loss(ax, loss: xr.DataArray) -> tuple:
    """The twin axes of ``ax`` with the loss line(s) on it, and those lines."""
    twin = ax.twinx()
    x = np.asarray(loss[STEP].values)
    values = np.asarray(loss.values, dtype=float)
    if loss.ndim == 1:
        series = [("loss", values)]
    else:
        other = loss.dims[1]
        series = [(f"loss ({label})", values[:, i])
                  for i, label in enumerate(loss[other].values)]
    styles = ("--", ":", "-.", (0, (5, 1, 1, 1)))
    lines = []
    for i, (label, y) in enumerate(series):
        keep = ~np.isnan(y)  # an outer join of runs' scalars leaves NaN between records
        lines += twin.plot(x[keep], y[keep], color="0.35", linestyle=styles[i % len(styles)],
                           linewidth=1.0, label=label)
    twin.set_ylabel("loss")
    return twin, lines


def _colours(hue_values: np.ndarray) -> tuple[Normalize, np.ndarray]:
    """A norm and each line's position on it: the labels if numeric, else their order."""
    numeric = hue_values.dtype.kind in "iuf"
    positions = (hue_values.astype(float) if numeric
                 else np.arange(len(hue_values), dtype=float))
    return Normalize(positions.min(), positions.max()), positions


def trajectories(results: xr.Dataset | xr.DataArray | Mapping[str, xr.Dataset | xr.DataArray],
                 var: str | Sequence[str] = "std", *, loss: xr.DataArray | None = None,
                 hue: Hashable | None = None, logy: bool = False,
                 title: str | None = None) -> Figure:
    """Per-step statistics over training, one line per layer, channel or run.

    Parameters
    ----------
    results : Dataset, DataArray, or mapping {layer: Dataset or DataArray}
        Per-step results, e.g. from ``ts.moments``, with a ``step`` dim and
        at most one other dim (``channel`` or ``run``), which is drawn as
        one line per label. With a mapping, one line per layer, and each
        layer's result should have been reduced to ``step`` alone (or give
        ``hue``). A DataArray is drawn as it is; ``var`` then only names its
        axis, if the DataArray has no name.
    var : str or list of str
        Variable(s) to draw; one subplot per variable, stacked, sharing x.
    loss : DataArray, optional
        A series over ``step`` (e.g. ``run.scalars["loss"]``; one more dim,
        such as ``run``, gives one line per label), drawn on a twin y axis
        of every subplot as a dashed line labelled ``"loss"`` (the legend,
        if any, is then on the twin axes). Its NaNs (steps where it was not
        recorded) are skipped.
    hue : str, optional
        The dim whose labels become separate lines. By default the one dim
        besides ``step`` of a single result; with a mapping, none (lines
        per layer / label when given).
    logy : bool
        Log scale for the statistic's axis.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per variable (plus its twin for ``loss``, plus a colorbar
        when more than ten lines come from one hue dim: then lines are
        coloured by their label and the legend is left out). Lines carry
        their labels; NaNs show as gaps.

    Examples
    --------
    >>> import numpy as np, xarray as xr, tensorstats as ts
    >>> from tensorstats.plot import trajectories
    >>> rng = np.random.default_rng(0)
    >>> da = xr.DataArray(rng.normal(size=(5, 3, 40)), dims=("step", "channel", "dim_1"),
    ...                   coords={"step": [0, 10, 20, 30, 40]})
    >>> fig = trajectories(ts.moments(da), ["mean", "std"])
    >>> len(fig.axes), len(fig.axes[0].get_lines())
    (2, 3)
    """
    names = _vars(var)
    logy = check_bool(FN, "logy", logy)
    title = check_title(FN, title)
    loss = _check_loss(loss)
    layers, mapping = as_layers(FN, results, (xr.Dataset, xr.DataArray))
    selected = {layer: _as_dataset(layer, r, names) for layer, r in layers.items()}
    for layer, (ds, vs) in selected.items():  # check dims before computing anything
        for v in vs:
            _hue_dim(layer, ds[v], hue, mapping)
    datasets = compute(*(ds for ds, _ in selected.values()), loss)
    loss = datasets[-1]

    panels: list[list[_Line]] = [[] for _ in names]
    hue_dim, hue_values = None, None
    for layer, ds in zip(selected, datasets[:-1], strict=True):
        layer_panels, hue_dim = _lines(ds, layer, hue, mapping)
        for panel, lines in zip(panels, layer_panels, strict=True):
            panel.extend(lines)
        if not mapping and hue_dim is not None:
            hue_values = np.asarray(ds[hue_dim].values)
    ylabels = next(iter(selected.values()))[1]  # the DataArray's own name, if it has one

    fig, axes = new_figure(len(panels), 1, width=7.0, height=1.0 + 2.6 * len(panels),
                           sharex=True)
    many = (hue_values is not None and len(hue_values) > MAX_LEGEND
            and all(len(lines) == len(hue_values) for lines in panels))
    cmap = colormaps["viridis"]
    if many:
        norm, positions = _colours(hue_values)
    for ax, name, lines in zip(axes[:, 0], ylabels, panels, strict=True):
        drawn = []
        for i, line in enumerate(lines):
            color = cmap(norm(positions[i])) if many else None
            (artist,) = ax.plot(line.x, line.y, label=line.label, color=color,
                                linewidth=1.0 if many else 1.5)
            drawn.append(artist)
        ax.set_ylabel(name)
        if logy:
            ax.set_yscale("log")
        top, extra = ax, []
        if loss is not None:
            top, extra = _draw_loss(ax, loss)
        if not many:  # on the top axes, so the twin's lines do not cover the legend
            legend(top, drawn + extra if len(drawn) > 1 or len(extra) > 1 else [])
    axes[-1, 0].set_xlabel(STEP)
    if many:
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[:, 0]),
                           label=str(hue_dim))
        if hue_values.dtype.kind not in "iuf":
            ends = [0, len(hue_values) - 1]
            bar.set_ticks(ends, labels=[str(hue_values[i]) for i in ends])
    return finish(fig, title)

"""``emission_absorption``: per-channel box plots of emission and absorption (seed paper Fig. 4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ..dims import IN_CHANNEL, OUT_CHANNEL, SAMPLE, STEP
from ._common import (
    check_bool,
    check_title,
    compute,
    finish,
    new_figure,
    pick_step,
    variable,
    with_steps,
)

FN = "emission_absorption"
YLABEL = "‖local gradient‖ summed"


@dataclass(frozen=True)
class _Panel:
    """One panel: its variable, channel dim and x label."""

    var: str
    channel: str
    xlabel: str


PANELS = (_Panel("emission", OUT_CHANNEL, "output channel c₁"),
          _Panel("absorption", IN_CHANNEL, "input channel c₂"))


def _select(ds: xr.Dataset, panel: _Panel, k: int, step: object) -> tuple[xr.DataArray, str]:
    """The first ``k`` channels of the panel's variable at ``step``, dims (sample..., channel)."""
    da = variable(FN, ds, panel.var)
    expected = (STEP, SAMPLE, panel.channel)
    if set(da.dims) - set(expected) or not {SAMPLE, panel.channel} <= set(da.dims):
        raise ValueError(f"{FN}: variable {panel.var!r} must have dims {list(expected)} "
                         f"({STEP!r} optional), got {list(da.dims)}; select or pool other dims "
                         f"first")
    da = with_steps(da.isel({panel.channel: slice(0, k)}))
    if STEP not in da.dims:
        where = "the samples"
    elif step is None:
        where = "all steps"
    else:
        label = pick_step(FN, np.asarray(da[STEP].values), step)
        da = da.sel({STEP: label})
        where = f"step {label}"
    return da.transpose(..., panel.channel), where


def _boxes(values: np.ndarray) -> tuple[list[np.ndarray], int, int]:
    """Each channel's finite values (last axis = channel), and the NaN and Inf left out."""
    flat = np.asarray(values, dtype=float).reshape(-1, values.shape[-1])
    boxes = [col[np.isfinite(col)] for col in flat.T]
    return boxes, int(np.isnan(flat).sum()), int(np.isinf(flat).sum())


def emission_absorption(results: xr.Dataset, *, k: int = 15, step: object = "last",
                        logy: bool = False, title: str | None = None) -> Figure:
    """Box plots of each channel's emission and absorption, as the seed paper's Figure 4.

    Parameters
    ----------
    results : Dataset
        From ``ts.emission_absorption(run, layer)``: ``emission`` with dims
        (``step``, ``sample``, ``out_channel``) and ``absorption`` with dims
        (``step``, ``sample``, ``in_channel``).
    k : int
        Draw the first ``k`` channels of each (fewer if there are fewer).
    step : step label, "first", "last" or None
        The step whose samples are drawn; ``None`` pools every step into
        the samples. Ignored when the results have no ``step`` dim.
    logy : bool
        Log scale for the values.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes, emission then absorption, each with one box (``ax.boxplot``,
        whiskers at 1.5 IQR) per channel over the samples. NaN and Inf are
        left out of each box and counted in the panel's title.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from tensorstats.plot import emission_absorption
    >>> rng = np.random.default_rng(0)
    >>> ds = xr.Dataset({"emission": (("step", "sample", "out_channel"),
    ...                               rng.gamma(2.0, size=(2, 30, 20))),
    ...                  "absorption": (("step", "sample", "in_channel"),
    ...                                 rng.gamma(2.0, size=(2, 30, 6)))})
    >>> fig = emission_absorption(ds, k=15)
    >>> [len(ax.get_xticks()) for ax in fig.axes]
    [15, 6]
    """
    if not isinstance(results, xr.Dataset):
        raise TypeError(f"{FN}: results must be the Dataset of ts.emission_absorption, got "
                        f"{type(results).__name__}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{FN}: k must be a positive int, got {k!r}")
    if step is not None and not isinstance(step, (str, int, float, np.integer, np.floating)):
        raise TypeError(f"{FN}: step must be a step label, 'first', 'last' or None, got {step!r}")
    logy = check_bool(FN, "logy", logy)
    title = check_title(FN, title)
    selected = [_select(results, panel, int(k), step) for panel in PANELS]
    loaded = compute(*(da for da, _ in selected))

    fig, axes = new_figure(1, 2, width=11.0, height=4.0)
    for ax, panel, da, (_, where) in zip(axes[0], PANELS, loaded, selected, strict=True):
        boxes, nan, inf = _boxes(da.values)
        positions = np.arange(1, len(boxes) + 1)
        ax.boxplot(boxes, positions=positions, widths=0.6)
        ax.set_xticks(positions, [str(c) for c in da[panel.channel].values])
        left_out = [f"{n} {what}" for n, what in ((nan, "NaN"), (inf, "Inf")) if n]
        ax.set_title(f"{panel.var} ({where})"
                     + (f"; {', '.join(left_out)} left out" if left_out else ""))
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(YLABEL)
        if logy:
            ax.set_yscale("log")
    return finish(fig, title)

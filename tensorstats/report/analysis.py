"""Every number a report shows, computed per run in one ``dask.compute``.

For one run, :func:`analyse_run` builds the lazy analyses of every layer
(moments of every series, normality and shift of the report's layers) and
computes them together, so dask reads each chunk once and runs the layers in
parallel. The results are small (per step, per channel) and held in memory.

Costs are bounded: moments read every step (they are what the NaN/Inf check
needs, and stored exact moments are used where a series was subsampled);
normality and shift use at most ``max_steps`` evenly spaced steps and at most
:data:`NORMALITY_SAMPLES` / :data:`SHIFT_SAMPLES` values per group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..dims import STEP
from ..store.format import META_KEY, SCALAR_VAR, SCALARS
from .inputs import spaced_steps

NORMALITY_TEST = "shapiro"
"""The normality test of the report (Shapiro-Wilk; its effect sizes come with it)."""

NORMALITY_SAMPLES = 1000
"""Values per (step, channel) group tested for normality at most (subsampled, seeded)."""

SHIFT_SAMPLES = 2000
"""Values per (step, channel) group compared with the initial step at most."""

SHIFT_METRIC = "wasserstein"

Series = tuple[str, str]
"""``(kind, layer)``."""


@dataclass
class RunAnalysis:
    """What was computed for one run, in memory.

    Attributes
    ----------
    name : str
        The run's name in the report.
    run : tensorstats.Run
        The open run.
    moments : dict
        ``{(kind, layer): Dataset}`` of ``ts.moments(..., by="step")`` over
        every recorded step of every series.
    scalars : dict
        ``{name: DataArray}``: every scalar series at the steps it was recorded.
    normality, shift : dict
        ``{layer: Dataset}`` of ``ts.normality`` / ``ts.shift`` (from the
        first step) of the report's layers, over the analysed steps.
    """

    name: str
    run: Any
    moments: dict[Series, xr.Dataset]
    scalars: dict[str, xr.DataArray]
    normality: dict[str, xr.Dataset] = field(default_factory=dict)
    shift: dict[str, xr.Dataset] = field(default_factory=dict)

    def layer_moments(self, kind: str) -> dict[str, xr.Dataset]:
        """``{layer: moments}`` of the series of ``kind``."""
        return {layer: ds for (k, layer), ds in self.moments.items() if k == kind}


def lazy_moments(run: Any) -> dict[Series, xr.Dataset]:
    """Lazy per-step moments of every series of ``run``; stored exact ones where subsampled."""
    from ..stats.moments import moments

    out = {}
    for (kind, layer), da in run.items():
        stored = run.moments(kind, layer)
        out[kind, layer] = moments(stored if stored is not None else da, by=(STEP,))
    return out


def lazy_scalars(run: Any) -> dict[str, xr.DataArray]:
    """Every scalar series of ``run``, lazily, at the steps it was recorded.

    ``run.scalars`` joins all scalars on one step axis, which puts NaN where a
    scalar was not recorded; the tree keeps each series apart, so a NaN here
    is a recorded NaN.
    """
    tree = run.tree
    if SCALARS not in tree.children:
        return {}
    out = {}
    for key, node in tree[SCALARS].children.items():
        name = node.attrs.get(META_KEY, {}).get("scalar", key)
        out[str(name)] = node.to_dataset()[SCALAR_VAR].rename(str(name))
    return dict(sorted(out.items()))


def _capped(da: xr.DataArray, max_steps: int | None) -> xr.DataArray:
    return da.sel({STEP: spaced_steps(da[STEP].values, max_steps)})


def analyse_run(name: str, run: Any, *, kind: str | None = None,
                layers: list[str] = (), max_steps: int | None = None,
                distributions: bool = True) -> RunAnalysis:
    """Compute the moments and scalars of ``run`` and, if ``distributions``, the normality
    and shift of its ``layers`` of ``kind``, in one ``dask.compute``.

    Examples
    --------
    >>> import numpy as np, tempfile, os, tensorstats as ts
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> with ts.Recorder(path) as rec:
    ...     for s in range(3):
    ...         rec.record("weight", "w", np.arange(4.0) * (s + 1), step=s)
    ...         rec.record_scalar("loss", 1.0 / (s + 1), step=s)
    >>> res = analyse_run("a", ts.open_run(path), kind="weight", layers=["w"])
    >>> res.moments["weight", "w"]["std"].values.round(3).tolist()
    [1.118, 2.236, 3.354]
    >>> float(res.shift["w"]["wasserstein"].isel(step=-1).median())
    3.0
    """
    import dask

    from ..stats.normality import normality
    from ..stats.shift import shift

    lazy: dict[str, Any] = {"moments": lazy_moments(run), "scalars": lazy_scalars(run),
                            "normality": {}, "shift": {}}
    if distributions and kind is not None and kind in run.kinds:
        for layer in layers:
            if (kind, layer) not in run:
                continue
            da = _capped(run[kind, layer], max_steps)
            lazy["normality"][layer] = normality(da, tests=(NORMALITY_TEST,),
                                                 max_samples=NORMALITY_SAMPLES)
            lazy["shift"][layer] = shift(da, reference="initial", metrics=(SHIFT_METRIC,),
                                         max_samples=SHIFT_SAMPLES)
    (done,) = dask.compute(lazy)
    return RunAnalysis(name=name, run=run, **done)


def series_label(kind: str, layer: str) -> str:
    """How a series is named in sentences: ``"feature conv2"``."""
    return f"{kind} {layer}"


def first_last(ds: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset] | None:
    """The first and last recorded step of a per-step result; None with fewer than 2 steps."""
    if ds.sizes.get(STEP, 0) < 2:
        return None
    return ds.isel({STEP: 0}), ds.isel({STEP: -1})


def median_over_channels(da: xr.DataArray) -> xr.DataArray:
    """``da`` with every dim but ``step`` reduced by the median, NaN skipped."""
    import warnings

    others = [d for d in da.dims if d != STEP]
    if not others:
        return da
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN step: stays NaN
        return da.median(others)


def finite(x: object) -> bool:
    """Whether ``x`` is a finite number."""
    return bool(np.isfinite(np.asarray(x, dtype=float)).all())

"""Figures of analysis results (the ``plot`` extra): each function returns a matplotlib Figure.

Nothing is shown or saved here, and pyplot is never used: every figure is a
plain :class:`matplotlib.figure.Figure`, so no GUI backend is needed and no
figure is left open. Save one with ``fig.savefig(...)`` or put it in a report.
Lazy (dask-backed) results are computed once, and only what is drawn.

- :func:`trajectories`: per-step statistics (``ts.moments``) over training.
- :func:`distributions`: histograms of raw values at chosen steps, on shared bins.
- :func:`normality_heatmap`: a layer x step heatmap of ``ts.normality`` results.
- :func:`shift`: distance from the reference over training (``ts.shift``).
- :func:`emission_absorption`: per-channel box plots of ``ts.emission_absorption``.
"""

from . import _common  # noqa: F401 -- first: without matplotlib it raises the ImportError saying why
from ._distributions import distributions
from ._emission import emission_absorption
from ._heatmap import normality_heatmap
from ._shift import shift
from ._trajectories import trajectories

__all__ = ["distributions", "emission_absorption", "normality_heatmap", "shift", "trajectories"]

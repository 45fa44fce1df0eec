"""tensorstats: statistics of neural-network tensors over training.

>>> import tensorstats as ts
>>> sorted(n for n in ts.__all__ if not n.startswith("_"))  # doctest: +NORMALIZE_WHITESPACE
['Recorder', 'Run', 'Runs', 'at', 'check', 'correlate', 'emission_absorption',
 'every', 'fdr', 'granger', 'logspaced', 'meanfield', 'moments', 'normality', 'open_run',
 'open_runs', 'scalars_from_csv', 'scalars_from_tensorboard', 'shift', 'to_frame']

The public names are loaded on first use (SPEC 1 style): ``import tensorstats``
imports neither xarray, dask, scipy nor numba, so the command line and a
training script start fast; ``ts.moments`` imports what the analysis needs
the first time it is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

_PUBLIC = {
    "Recorder": "collect",
    "check": "verify",
    "at": "collect.schedules",
    "every": "collect.schedules",
    "logspaced": "collect.schedules",
    "emission_absorption": "layers",
    "meanfield": "layers",
    "Run": "run",
    "Runs": "run",
    "open_run": "run",
    "open_runs": "run",
    "correlate": "stats.correlate",
    "granger": "stats.correlate",
    "fdr": "stats.multitest",
    "moments": "stats.moments",
    "normality": "stats.normality",
    "shift": "stats.shift",
    "to_frame": "stats.tidy",
    "scalars_from_csv": "scalars",
    "scalars_from_tensorboard": "scalars",
}

__all__ = ["Recorder", "Run", "Runs", "__version__", "at", "check", "correlate",
           "emission_absorption",
           "every", "fdr", "granger", "logspaced", "meanfield", "moments", "normality",
           "open_run", "open_runs", "scalars_from_csv", "scalars_from_tensorboard", "shift",
           "to_frame"]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tensorstats' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from .collect import Recorder
    from .collect.schedules import at, every, logspaced
    from .layers import emission_absorption, meanfield
    from .run import Run, Runs, open_run, open_runs
    from .scalars import scalars_from_csv, scalars_from_tensorboard
    from .stats.correlate import correlate, granger
    from .stats.moments import moments
    from .stats.multitest import fdr
    from .stats.normality import normality
    from .stats.shift import shift
    from .stats.tidy import to_frame
    from .verify import check

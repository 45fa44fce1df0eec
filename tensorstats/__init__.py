"""tensorstats: statistics of neural-network tensors over training.

>>> import tensorstats as ts
>>> sorted(n for n in ts.__all__ if not n.startswith("_"))  # doctest: +NORMALIZE_WHITESPACE
['Recorder', 'Run', 'Runs', 'at', 'correlate', 'emission_absorption', 'every', 'granger',
 'logspaced', 'meanfield', 'moments', 'normality', 'open_run', 'open_runs', 'shift', 'to_frame']
"""

from ._version import __version__
from .collect import Recorder
from .collect.schedules import at, every, logspaced
from .layers import emission_absorption, meanfield
from .run import Run, Runs, open_run, open_runs
from .stats.correlate import correlate, granger
from .stats.moments import moments
from .stats.normality import normality
from .stats.shift import shift
from .stats.tidy import to_frame

__all__ = ["Recorder", "Run", "Runs", "__version__", "at", "correlate", "emission_absorption",
           "every", "granger", "logspaced", "meanfield", "moments", "normality", "open_run",
           "open_runs", "shift", "to_frame"]

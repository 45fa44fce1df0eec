"""tensorstats: statistics of neural-network tensors over training.

>>> import tensorstats as ts
>>> sorted(n for n in ts.__all__ if not n.startswith("_"))
['Recorder', 'Run', 'Runs', 'at', 'every', 'logspaced', 'open_run', 'open_runs']
"""

from ._version import __version__
from .collect import Recorder
from .collect.schedules import at, every, logspaced
from .run import Run, Runs, open_run, open_runs

__all__ = ["Recorder", "Run", "Runs", "__version__", "at", "every", "logspaced", "open_run",
           "open_runs"]

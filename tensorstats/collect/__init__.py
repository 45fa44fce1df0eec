"""Writing: the framework-agnostic :class:`Recorder`, schedules and subsampling.

The framework adapters build on it: :mod:`tensorstats.torch` (``watch``, hooks),
:mod:`tensorstats.jax` (``record_pytree``), and the training-framework callbacks
:mod:`tensorstats.lightning` and :mod:`tensorstats.hf`.
"""

from .recorder import Recorder

__all__ = ["Recorder"]

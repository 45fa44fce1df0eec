"""``ts.check`` (module ``verify``): verify a run store and list what is wrong with it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .store.check import Problem

__all__ = ["Problem", "check"]


def check(run: Any, *, storage_options: Mapping[str, Any] | None = None) -> list[Problem]:
    """Verify a run store: chunks present and whole, metadata consistent, steps increasing.

    Parameters
    ----------
    run : tensorstats.Run, str or os.PathLike
        An open run, or the path or URL of a store.
    storage_options : mapping, optional
        fsspec options for a URL (ignored for an open run, which has its own).

    Returns
    -------
    list of Problem
        Empty when the store is sound. Each :class:`~tensorstats.store.check.Problem`
        names the series, the step where there is one, what is wrong and its
        severity: ``"error"`` (data missing, truncated, undecodable; metadata
        unreadable or inconsistent) or ``"warning"`` (an append cut short by a
        crash, which readers and ``mode="a"`` handle).

    Notes
    -----
    Every chunk of every committed step is looked at (local uncompressed
    chunks by size, everything else read and decoded), so a check costs about
    one full read of the store. Nothing is written. ``tensorstats check RUN``
    is the same from the command line.

    Examples
    --------
    >>> import numpy as np, os, tempfile, tensorstats as ts
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> with ts.Recorder(path) as rec:
    ...     for step in range(3):
    ...         rec.record("weight", "w", np.ones((32, 64)) * step, step=step)
    >>> ts.check(path)
    []
    >>> os.remove(os.path.join(path, "tensors", "weight", "w", "tensor", "c.1.0.0"))
    >>> [str(p) for p in ts.check(path)]
    ['error: weight/w step 1: tensor chunk c.1.0.0 is missing']
    """
    from .store.backend import open_backend
    from .store.check import check_store

    if hasattr(run, "_backend") and hasattr(run, "store"):
        return check_store(run._backend)
    if not isinstance(run, (str, os.PathLike)):
        raise TypeError(f"ts.check needs a Run or a store path/URL, got {type(run).__name__}")
    return check_store(open_backend(run, storage_options))

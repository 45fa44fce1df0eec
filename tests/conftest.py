"""Shared fixtures and helpers."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import dask
import pytest


@pytest.fixture
def store(tmp_path):
    """A path for a new run store inside the test's temp folder."""
    return os.fspath(tmp_path / "run.zarr")


@pytest.fixture
def memory_url():
    """A fresh memory:// URL, removed afterwards."""
    import fsspec

    url = f"memory://tensorstats-tests/{uuid.uuid4().hex}/run.zarr"
    yield url
    fs = fsspec.filesystem("memory")
    root = url.removeprefix("memory://")
    if fs.exists(root):
        fs.rm(root, recursive=True)


class _CountingScheduler:
    """A dask scheduler that fails when more than ``max_computes`` computes run."""

    def __init__(self, max_computes: int = 0):
        self.total = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        self.total += 1
        if self.total > self.max_computes:
            raise RuntimeError(f"Too many computes: {self.total} > {self.max_computes}; "
                               "dask computed something while it should have stayed lazy")
        return dask.get(dsk, keys, **kwargs)


@contextmanager
def raise_if_dask_computes(max_computes: int = 0):
    """Like ``xarray.tests.raise_if_dask_computes``: fail on any dask compute."""
    with dask.config.set(scheduler=_CountingScheduler(max_computes)):
        yield


def tree_snapshot(path) -> dict[str, bytes]:
    """Every file below ``path`` with its content, to prove nothing changed."""
    out = {}
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = fh.read()
    return out



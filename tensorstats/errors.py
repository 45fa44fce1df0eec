"""The errors tensorstats raises about stores and series, one class per case.

Each subclasses the built-in exception that was raised before it existed
(``FileNotFoundError``, ``ValueError``, ``KeyError``), so existing
``except`` clauses keep working, while the command line maps each case to
its own exit code (see ``docs/cli.md``).
"""

from __future__ import annotations


class StoreNotFoundError(FileNotFoundError):
    """No run store at the given path or URL (no ``zarr.json`` there)."""


class NotARunStoreError(ValueError):
    """A Zarr store (or a folder) that tensorstats did not write, or whose root metadata is
    not readable JSON."""


class FormatVersionError(ValueError):
    """A run store whose format major version this tensorstats cannot read."""


class UnknownSeriesError(KeyError):
    """No such kind, layer, scalar or probe in a run (or no layer matches a pattern)."""

    def __str__(self) -> str:  # KeyError quotes its message; say it plainly
        return str(self.args[0]) if self.args else ""


class DamagedStoreError(NotARunStoreError):
    """Part of a run store is damaged: a series' metadata is not readable, or a chunk is
    missing, truncated or does not decode. The message names the series and, where it
    can, the step; ``tensorstats check`` lists every such problem."""


class StoreLockedError(RuntimeError):
    """Another Recorder is writing the same store (or the same rank of it)."""

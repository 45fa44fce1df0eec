"""What the commands share: opening runs, choosing layers, progress bars."""

from __future__ import annotations

import contextlib
import fnmatch
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import click

from ..errors import UnknownSeriesError

T = TypeVar("T")


def interactive() -> bool:
    """Progress bars only when stdout is a terminal (never in pipes, logs or CI)."""
    return sys.stdout.isatty()


def progress(items: Iterable[T], label: str) -> Iterator[T]:
    """Iterate ``items`` with a click progress bar when interactive, plainly otherwise."""
    if not interactive():
        yield from items
        return
    items = list(items)
    with click.progressbar(items, label=label, show_pos=True) as bar:
        yield from bar


@contextlib.contextmanager
def dask_progress() -> Iterator[None]:
    """Dask's progress bar around computations, when interactive."""
    if not interactive():
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(dt=0.5):
        yield


def run_names(paths: Sequence[str]) -> dict[str, str]:
    """``{name: path}``: each run named by its folder, made unique where two collide."""
    names: dict[str, str] = {}
    for path in paths:
        base = os.path.basename(os.path.normpath(str(path))) or str(path)
        stem = base[:-5] if base.endswith(".zarr") else base
        name, k = stem, 2
        while name in names:
            name, k = f"{stem}-{k}", k + 1
        names[name] = path
    return names


def open_runs(paths: Sequence[str]) -> dict[str, Any]:
    """``{name: Run}`` for the given stores; errors name the store."""
    from ..run import open_run

    return {name: open_run(path) for name, path in run_names(paths).items()}


def pick_kind(run: Any, kind: str | None, default: Sequence[str] = ("feature", "weight")) -> str:
    """The kind asked for (checked), or the first of ``default`` the run has."""
    if kind is not None:
        if kind not in run.kinds:
            raise UnknownSeriesError(f"no kind {kind!r} in {run.store!r}; kinds: {run.kinds}")
        return kind
    for k in default:
        if k in run.kinds:
            return k
    if run.kinds:
        return run.kinds[0]
    raise UnknownSeriesError(f"{run.store!r} holds no tensor series")


def match_layers(layers: Sequence[str], patterns: Sequence[str] | None, *, kind: str,
                 store: str) -> list[str]:
    """Layers matching any of the glob ``patterns`` (all when none); each pattern must match."""
    if not patterns:
        return list(layers)
    chosen: list[str] = []
    for pattern in patterns:
        if not pattern:
            raise UnknownSeriesError("an empty --layers pattern matches nothing")
        hits = fnmatch.filter(layers, pattern)
        if not hits:
            raise UnknownSeriesError(
                f"--layers {pattern!r} matches no layer of kind {kind!r} in {store!r}; "
                f"layers: {list(layers)}")
        chosen += [h for h in hits if h not in chosen]
    return [layer for layer in layers if layer in chosen]


def split_list(values: Sequence[str] | None) -> list[str]:
    """``("a,b", "c")`` -> ``["a", "b", "c"]``: options given repeated or comma-separated."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]

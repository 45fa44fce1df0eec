"""What a report is about: its runs, the kind, the layers, the steps analysed, the pages.

Every argument of :func:`~tensorstats.report.write_report` and
:func:`~tensorstats.report.findings` that names data is resolved here, once,
into plain Python values; nothing is loaded.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

Progress = Callable[[Iterable[Any], str], Iterable[Any]]
"""``progress(iterable, label) -> iterable``, e.g. a tqdm or click.progressbar factory."""

DEFAULT_KINDS = ("feature", "weight")
"""The kind a report is about when none is given: the first of these the runs have."""


def run_name(store: str | os.PathLike[str]) -> str:
    """A run's name from its store path: the folder name without ``.zarr``.

    Examples
    --------
    >>> run_name("runs/kaiming.zarr/")
    'kaiming'
    """
    name = os.path.basename(os.fspath(store).rstrip("/"))
    return name[: -len(".zarr")] if name.endswith(".zarr") else name


def as_runs(runs: object) -> dict[str, Any]:
    """``{name: Run}`` from a Run, a Runs, a path, a list of paths or a mapping name -> path/Run.

    Examples
    --------
    >>> as_runs(3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: runs must be a Run, a Runs, a path, a list of paths or a mapping ..., got int
    """
    from ..run import Run, Runs, open_run

    def one(value: object, where: str) -> Run:
        if isinstance(value, Run):
            return value
        if isinstance(value, (str, os.PathLike)):
            return open_run(value)
        raise TypeError(f"{where} must be a Run or a path to a run store, got "
                        f"{type(value).__name__}")

    if isinstance(runs, Runs):
        return dict(runs.runs)
    if isinstance(runs, (Run, str, os.PathLike)):
        run = one(runs, "runs")
        return {run_name(run.store): run}
    if isinstance(runs, Mapping):
        named = {str(name): one(value, f"runs[{name!r}]") for name, value in runs.items()}
    elif isinstance(runs, Sequence):
        named = {}
        for i, value in enumerate(runs):
            run = one(value, f"runs[{i}]")
            name = run_name(run.store)
            if name in named:
                raise ValueError(f"two runs would be named {name!r}; pass a mapping "
                                 f"{{name: path}} to name them")
            named[name] = run
    else:
        raise TypeError("runs must be a Run, a Runs, a path, a list of paths or a mapping "
                        f"{{name: path or Run}}, got {type(runs).__name__}")
    if not named:
        raise ValueError("runs is empty; give at least one run")
    return named


def all_kinds(runs: Mapping[str, Any]) -> list[str]:
    """The kinds present in any of the runs, sorted."""
    return sorted({kind for run in runs.values() for kind in run.kinds})


def pick_kind(runs: Mapping[str, Any], kind: str | None) -> str | None:
    """``kind`` if some run has it; by default the first of :data:`DEFAULT_KINDS` present,
    else the first kind; ``None`` when the runs hold no tensors.

    Examples
    --------
    >>> class R:
    ...     kinds = ["grad", "weight"]
    >>> pick_kind({"a": R()}, None)
    'weight'
    >>> pick_kind({"a": R()}, "feature")
    Traceback (most recent call last):
    ValueError: kind 'feature' is in none of the runs; kinds: ['grad', 'weight']
    """
    kinds = all_kinds(runs)
    if kind is not None:
        if not isinstance(kind, str):
            raise TypeError(f"kind must be a str or None, got {type(kind).__name__}")
        if kind not in kinds:
            raise ValueError(f"kind {kind!r} is in none of the runs; kinds: {kinds}")
        return kind
    for default in DEFAULT_KINDS:
        if default in kinds:
            return default
    return kinds[0] if kinds else None


def match_layers(names: Sequence[str], patterns: str | Sequence[str] | None) -> list[str]:
    """The names matching any glob pattern (all for ``None``), in their order.

    Examples
    --------
    >>> match_layers(["conv1", "conv2", "fc1"], ["conv*"])
    ['conv1', 'conv2']
    >>> match_layers(["conv1"], "fc*")
    Traceback (most recent call last):
    ValueError: layers ['fc*'] match none of the layers: ['conv1']
    """
    if patterns is None:
        return list(names)
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"layers must be a glob pattern or a non-empty list of them, got "
                        f"{patterns!r}")
    picked = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not picked:
        raise ValueError(f"layers {patterns} match none of the layers: {list(names)}")
    return picked


def layers_of(runs: Mapping[str, Any], kind: str | None,
              patterns: str | Sequence[str] | None) -> list[str]:
    """The layers of ``kind`` in any run that match ``patterns``, sorted."""
    if kind is None:
        return []
    names = sorted({layer for run in runs.values() if kind in run.kinds
                    for layer in run.layers(kind)})
    return match_layers(names, patterns)


def spaced_steps(steps: np.ndarray, max_steps: int | None) -> np.ndarray:
    """At most ``max_steps`` of ``steps``, evenly spaced, the first and last included.

    Examples
    --------
    >>> spaced_steps(np.arange(0, 100, 10), 4).tolist()
    [0, 30, 60, 90]
    >>> spaced_steps(np.array([0, 5]), 4).tolist()
    [0, 5]
    """
    steps = np.unique(np.asarray(steps))
    if max_steps is None or len(steps) <= max_steps:
        return steps
    return steps[np.unique(np.linspace(0, len(steps) - 1, max_steps).round().astype(int))]


def check_max_steps(max_steps: object) -> int | None:
    """``max_steps`` if it is None or an int >= 2, else ValueError."""
    if max_steps is None:
        return None
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) \
            or max_steps < 2:
        raise ValueError(f"max_steps must be an int >= 2 (first and last step) or None, "
                         f"got {max_steps!r}")
    return int(max_steps)


def pages(items: Sequence[T], per_page: int) -> list[list[T]]:
    """``items`` cut into consecutive pages of at most ``per_page``.

    Examples
    --------
    >>> pages(list("abcde"), 2)
    [['a', 'b'], ['c', 'd'], ['e']]
    """
    if isinstance(per_page, bool) or not isinstance(per_page, (int, np.integer)) \
            or per_page < 1:
        raise ValueError(f"per_page must be a positive int, got {per_page!r}")
    return [list(items[i:i + per_page]) for i in range(0, len(items), per_page)]


def no_progress(iterable: Iterable[T], label: str) -> Iterable[T]:
    """The default ``progress``: the iterable itself, no bar."""
    return iterable


def check_progress(progress: object) -> Progress:
    """``progress`` if callable, :func:`no_progress` for None, else TypeError."""
    if progress is None:
        return no_progress
    if not callable(progress):
        raise TypeError(f"progress must be a callable progress(iterable, label) or None, "
                        f"got {type(progress).__name__}")
    return progress

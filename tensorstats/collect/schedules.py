"""Logging schedules: plain ``step -> bool`` callables.

Any function of the step works as a schedule; these three cover the usual
cases, and :func:`as_schedule` turns an ``int`` or a collection of steps into
one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

Schedule = Callable[[int], bool]


class every:
    """Log every ``n`` steps, starting at ``start``.

    Examples
    --------
    >>> s = every(10)
    >>> [t for t in range(35) if s(t)]
    [0, 10, 20, 30]
    >>> [t for t in range(12) if every(5, start=2)(t)]
    [2, 7]
    """

    def __init__(self, n: int, start: int = 0):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"every(n) needs a positive integer n, got {n!r}")
        self.n, self.start = int(n), int(start)

    def __call__(self, step: int) -> bool:
        return step >= self.start and (step - self.start) % self.n == 0

    def __repr__(self) -> str:
        return f"every({self.n}, start={self.start})"


class at:
    """Log exactly at the given steps.

    Examples
    --------
    >>> s = at([0, 5, 100])
    >>> s(5), s(6)
    (True, False)
    """

    def __init__(self, steps: Iterable[int]):
        self.steps = frozenset(int(s) for s in steps)

    def __call__(self, step: int) -> bool:
        return step in self.steps

    def __repr__(self) -> str:
        return f"at({sorted(self.steps)})"


class logspaced(at):
    """About ``num`` steps between ``start`` and ``stop``, dense early and sparse late.

    The steps are ``start`` plus ``geomspace(1, stop - start, num)`` rounded
    to integers (duplicates merged, so early on every step is logged).

    Examples
    --------
    >>> s = logspaced(1000, num=12)
    >>> sorted(s.steps)
    [0, 1, 2, 4, 7, 12, 23, 43, 81, 152, 285, 534, 1000]
    """

    def __init__(self, stop: int, num: int = 50, start: int = 0):
        if stop <= start or num < 1:
            raise ValueError(f"logspaced needs stop > start and num >= 1, got {stop}, {num}")
        span = stop - start
        pts = np.unique(np.rint(np.geomspace(1, span, num=max(num, 2)))).astype(np.int64)
        super().__init__([start, *(start + int(p) for p in pts)])
        self.stop, self.num, self.start = stop, num, start

    def __repr__(self) -> str:
        return f"logspaced({self.stop}, num={self.num}, start={self.start})"


def as_schedule(spec: Any) -> Schedule:
    """An int ``n`` means :class:`every` ``(n)``; a callable is used as is; a
    collection of ints means :class:`at` those steps.

    Examples
    --------
    >>> as_schedule(10)(20), as_schedule([3, 4])(4), as_schedule(lambda s: s > 5)(6)
    (True, True, True)
    """
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return every(int(spec))
    if callable(spec):
        return spec
    if isinstance(spec, Iterable) and not isinstance(spec, (str, bytes)):
        return at(spec)
    raise TypeError(f"a schedule is an int, a step -> bool callable or a list of steps; "
                    f"got {spec!r}")

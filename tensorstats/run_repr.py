"""The text ``repr(run)`` shows: format, attrs, scalars, then every series with its size."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .store.discover import SeriesInfo
from .store.format import META_KEY


def fmt_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def fmt_steps(steps: np.ndarray) -> str:
    if len(steps) == 0:
        return "no steps"
    if len(steps) == 1:
        return f"step {steps[0]}"
    return f"steps {steps[0]}…{steps[-1]}"


def describe_run(store: str, probe: str | None, attrs: Mapping[str, Any],
                 tensors: Mapping[str, Mapping[str, SeriesInfo]],
                 scalars: Mapping[str, SeriesInfo], probes: Sequence[str]) -> str:
    meta = attrs.get(META_KEY, {})
    user = {k: v for k, v in attrs.items() if k != META_KEY}
    head = f"<tensorstats.Run {store!r}" + (f" probe {probe!r}>" if probe else ">")
    lines = [head,
             f"  format {meta.get('format_version')}, written by tensorstats "
             f"{meta.get('version')}, codec {meta.get('codec')}"]
    if user:
        lines.append("  attrs: " + ", ".join(f"{k}={v!r}" for k, v in user.items()))
    if scalars:
        lines.append("  scalars: " + ", ".join(
            f"{n} ({len(s.steps)}, {fmt_steps(s.steps)})" for n, s in scalars.items()))
    total = 0
    for kind, layers in tensors.items():
        lines.append(f"  {kind} ({len(layers)} layers):")
        width = max((len(n) for n in layers), default=0)
        for name, s in layers.items():
            sizes = ", ".join(f"{d}: {n}" for d, n in zip(s.dims, s.shape, strict=True))
            total += s.nbytes
            lines.append(f"    {name:<{width}}  ({sizes})  {s.dtype.name}  "
                         f"{fmt_bytes(s.nbytes)}  {fmt_steps(s.steps)}")
    if probes:
        lines.append("  probes: " + ", ".join(probes) + "  (run.probe(name))")
    if not tensors and not scalars:
        lines.append("  (empty)")
    lines.append(f"  total tensor data: {fmt_bytes(total)}")
    return "\n".join(lines)

"""The automatic summary at the top of a report: :func:`findings`, in plain words.

Each sentence is made from per-step moments (``ts.moments(..., by="step")``;
stored exact moments where a series was subsampled), so the summary is cheap
enough for ``tensorstats info``:

- the first step at which any series (every kind and layer, and the scalars)
  holds a NaN or an Inf, and which series;
- the layers whose std and whose excess kurtosis moved most between their
  first and last recorded step, with the numbers;
- (in a report, from ``ts.shift``) the layers that drifted most from their
  first step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..dims import STEP
from .analysis import RunAnalysis, analyse_run, first_last, median_over_channels, series_label
from .inputs import as_runs, layers_of, pick_kind

TOP = 3
"""How many layers each ranking sentence names."""


def _num(x: float) -> str:
    """A number with 3 significant digits, as in every sentence."""
    return f"{x:.3g}"


def _prefix(name: str, several: bool) -> str:
    return f"Run {name!r}: " if several else ""


def _first_nonfinite(counts: xr.DataArray) -> tuple[int, int] | None:
    """``(step, count)`` of the first step with a non-zero count, or None."""
    values = np.asarray(counts.values)
    hits = np.flatnonzero(values > 0)
    if not hits.size:
        return None
    return counts[STEP].values[hits[0]].item(), int(values[hits[0]])


def _series_hits(analysis: RunAnalysis) -> dict[str, tuple[int, str]]:
    """``{series: (first step, "what was there")}`` for every series holding NaN or Inf."""
    first: dict[str, tuple[int, str]] = {}
    for (kind, layer), ds in analysis.moments.items():
        hits = [(hit, what) for what, var in (("NaN", "nan_count"), ("Inf", "inf_count"))
                if (hit := _first_nonfinite(ds[var])) is not None]
        if hits:
            step = min(step for (step, _), _ in hits)
            parts = [f"{n} {what}" for (s, n), what in hits if s == step]
            first[series_label(kind, layer)] = (step, ", ".join(parts))
    for name, da in analysis.scalars.items():
        values = np.asarray(da.values, dtype=float)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            first[f"scalar {name}"] = (da[STEP].values[bad[0]].item(), str(values[bad[0]]))
    return first


def nonfinite_sentence(analysis: RunAnalysis, several: bool = False) -> str:
    """Where NaN or Inf first appear in any series or scalar of the run, or that none do."""
    first = _series_hits(analysis)
    prefix = _prefix(analysis.name, several)
    if not first:
        n_series = len(analysis.moments) + len(analysis.scalars)
        return (f"{prefix}no NaN or Inf in any of its {n_series} series "
                f"({len(analysis.moments)} tensors, {len(analysis.scalars)} scalars; "
                f"every recorded step checked).")
    step = min(s for s, _ in first.values())
    at = [f"{label} ({what})" for label, (s, what) in sorted(first.items()) if s == step]
    later = len(first) - len(at)
    return (f"{prefix}first NaN/Inf at step {step}, in {', '.join(at)}"
            + (f"; {later} more series get NaN/Inf later" if later else "") + ".")


def _ranked(rows: list[tuple[str, float, float, float]]) -> list[tuple[str, float, float, float]]:
    """Rows ``(layer, first, last, score)`` with a finite score, largest score first."""
    return sorted((r for r in rows if np.isfinite(r[3])), key=lambda r: -r[3])


def std_sentence(analysis: RunAnalysis, kind: str, layers: Sequence[str],
                 several: bool = False) -> str | None:
    """The layers whose std changed most (ratio last/first step), with the numbers."""
    rows, zero, steps = [], 0, None
    for layer in layers:
        ds = analysis.moments.get((kind, layer))
        ends = None if ds is None else first_last(ds["std"])
        if ends is None:
            continue
        a, b = (float(v) for v in ends)
        steps = steps or (ends[0][STEP].item(), ends[1][STEP].item())
        if a == 0:
            zero += 1
            continue
        rows.append((layer, a, b, abs(np.log(b / a)) if b > 0 else np.inf))
    ranked = _ranked(rows)
    if not ranked:
        return None
    top = [f"{layer} {_num(a)} → {_num(b)} (×{_num(b / a)})" for layer, a, b, _ in ranked[:TOP]]
    text = (f"{_prefix(analysis.name, several)}the std of {kind} moved most in "
            f"{top[0]}" + (f"; then {', '.join(top[1:])}" if len(top) > 1 else "")
            + f" (first → last recorded step, e.g. {steps[0]} → {steps[1]})")
    if zero:
        text += f"; {zero} layer{'s' if zero > 1 else ''} starting at std 0 not ranked"
    return text + "."


def kurtosis_sentence(analysis: RunAnalysis, kind: str, layers: Sequence[str],
                      several: bool = False) -> str | None:
    """The layers whose excess kurtosis changed most (absolute change), with the numbers."""
    rows = []
    for layer in layers:
        ds = analysis.moments.get((kind, layer))
        ends = None if ds is None else first_last(ds["kurtosis"])
        if ends is not None:
            a, b = (float(v) for v in ends)
            rows.append((layer, a, b, abs(b - a)))
    ranked = _ranked(rows)
    if not ranked:
        return None
    top = [f"{layer} {_num(a)} → {_num(b)} ({b - a:+.3g})" for layer, a, b, _ in ranked[:TOP]]
    return (f"{_prefix(analysis.name, several)}the excess kurtosis of {kind} moved most in "
            f"{top[0]}" + (f"; then {', '.join(top[1:])}" if len(top) > 1 else "")
            + " (first → last recorded step; 0 is Gaussian).")


def drift_sentence(analysis: RunAnalysis, kind: str, several: bool = False) -> str | None:
    """The layers farthest from their first step at the last analysed step (``ts.shift``).

    Ranked by the median over channels of the Wasserstein-1 distance divided
    by the layer's std at its first step, so layers of different scale compare.
    """
    rows, zero = [], 0
    for layer, ds in analysis.shift.items():
        w1 = median_over_channels(ds["wasserstein"])
        moments = analysis.moments.get((kind, layer))
        if w1.sizes.get(STEP, 0) < 2 or moments is None:
            continue
        first = moments["std"].sel({STEP: w1[STEP].values[0]})
        w, s = float(w1.isel({STEP: -1})), float(first)
        if s == 0:
            zero += 1
            continue
        rows.append((layer, w, s, w / s))
    ranked = _ranked(rows)
    if not ranked:
        return None
    top = [f"{layer} (W1 {_num(w)}, {_num(r)}× its initial std)" for layer, w, _, r in
           ranked[:TOP]]
    text = (f"{_prefix(analysis.name, several)}the {kind} that drifted most from the first "
            f"step (Wasserstein-1 at the last step, median over channels): {top[0]}"
            + (f"; then {', '.join(top[1:])}" if len(top) > 1 else ""))
    if zero:
        text += f"; {zero} layer{'s' if zero > 1 else ''} starting at std 0 not ranked"
    return text + "."


def sentences(analyses: Sequence[RunAnalysis], kind: str | None,
              layers: Sequence[str]) -> list[str]:
    """Every summary sentence of the analysed runs: NaN/Inf, std, kurtosis, drift."""
    several = len(analyses) > 1
    out = [nonfinite_sentence(a, several) for a in analyses]
    if kind is None:
        return out
    for make in (std_sentence, kurtosis_sentence):
        out += [s for a in analyses if (s := make(a, kind, layers, several)) is not None]
    out += [s for a in analyses if (s := drift_sentence(a, kind, several)) is not None]
    return out


def findings(runs: Any, *, kind: str | None = None,
             layers: str | Sequence[str] | None = None) -> list[str]:
    """A short plain-words summary of one or several runs, from per-step moments only.

    Parameters
    ----------
    runs : Run, Runs, path, list of paths or mapping {name: path or Run}
        The runs; a list of paths names each run by its folder (without ``.zarr``).
    kind : str, optional
        The kind whose layers are ranked; default ``"feature"`` if present,
        else ``"weight"``. The NaN/Inf check covers every kind and scalar.
    layers : str or list of str, optional
        Glob patterns of the layers to rank (``"conv*"``); default all.

    Returns
    -------
    list of str
        One sentence per line of the summary: per run, the first step at which
        any series (every kind and layer, stored exact moments where a series was
        subsampled, and every scalar) holds a NaN or an Inf and which series
        (or that none do); then the layers whose std (ratio of last to first
        recorded step) and whose excess kurtosis (difference) moved most, with
        the numbers. :func:`write_report` adds the layers that drifted most
        from their first step (``ts.shift``).

    Examples
    --------
    >>> import numpy as np, tempfile, os, tensorstats as ts
    >>> from tensorstats.report import findings
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> rng = np.random.default_rng(0)
    >>> with ts.Recorder(path) as rec:
    ...     for step in (0, 10, 20):
    ...         x = rng.normal(size=(4, 100)) * (1 + step)
    ...         if step == 20:
    ...             x[0, 0] = np.nan
    ...         rec.record("weight", "fc1.weight", x, step=step)
    >>> lines = findings(path)
    >>> lines[0]
    'first NaN/Inf at step 20, in weight fc1.weight (1 NaN).'
    >>> lines[1].split(" (first")[0]
    'the std of weight moved most in fc1.weight 0.995 → 19.6 (×19.7)'
    """
    named = as_runs(runs)
    kind = pick_kind(named, kind)
    picked = layers_of(named, kind, layers)
    analyses = [analyse_run(name, run, distributions=False) for name, run in named.items()]
    return sentences(analyses, kind, picked)



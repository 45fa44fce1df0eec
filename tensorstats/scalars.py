"""Loss curves and other scalars logged elsewhere, as an ``xr.Dataset`` over ``step``.

Many runs log their loss with TensorBoard or export it to CSV (W&B, MLflow,
TensorBoard's own "download CSV"). These readers turn such logs into the same
shape as ``run.scalars``: one float64 variable per tag or column over an
integer ``step`` coordinate (outer join, NaN where a tag has no value), ready
for :func:`tensorstats.correlate` against a recorded series, or for
``tensorstats import-scalars`` to store into a run.

Nothing is changed silently: a step logged twice for one tag (a restarted
run writing into the same folder) keeps the value written last and warns
with the number of such steps; a CSV column that is not numeric is left out
with a warning naming it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .dims import STEP

STEP_COLUMNS = ("step", "_step", "global_step", "iteration")
"""Names (any case) taken as the step column of a CSV, in this order."""
WALL_TIME_COLUMNS = ("wall time", "wall_time", "_timestamp", "_runtime", "timestamp")
"""CSV columns that are clocks, not scalars: left out."""


def _dataset(series: Mapping[str, tuple[np.ndarray, np.ndarray]], source: str):
    """One Dataset over the union of steps from ``{name: (steps, values)}``."""
    import xarray as xr

    steps = np.unique(np.concatenate([s for s, _ in series.values()])) if series else \
        np.empty(0, np.int64)
    data = {}
    for name, (s, v) in series.items():
        full = np.full(steps.shape, np.nan)
        full[np.searchsorted(steps, s)] = v
        data[name] = ((STEP,), full)
    ds = xr.Dataset(data, coords={STEP: steps.astype(np.int64)})
    ds.attrs["source"] = source
    return ds


def _last_per_step(name: str, steps: np.ndarray, values: np.ndarray, order: np.ndarray,
                   where: str) -> tuple[np.ndarray, np.ndarray]:
    """Sort by (step, order) and keep the last-written value of a repeated step; warn."""
    idx = np.lexsort((order, steps))
    steps, values = steps[idx], values[idx]
    last = np.ones(steps.shape, bool)
    last[:-1] = steps[1:] != steps[:-1]
    repeated = int((~last).sum())
    if repeated:
        warnings.warn(f"{where}: {name!r} has {repeated} step(s) logged more than once "
                      "(a restarted run?); the value written last is kept", stacklevel=3)
    return steps[last], values[last]


# ------------------------------------------------------------------ TensorBoard
def _event_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"scalars_from_tensorboard: no such file or folder: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file() and "tfevents" in p.name)
    if not files:
        raise FileNotFoundError(f"scalars_from_tensorboard: no TensorBoard event files "
                                f"(*tfevents*) under {path}")
    return files


def _read_events(file: Path) -> dict[str, list[tuple[int, float, float]]]:
    """``{tag: [(step, wall_time, value), ...]}`` of one event file, scalars and 0-d tensors."""
    try:
        from tensorboard.backend.event_processing import event_accumulator as ea
        from tensorboard.util import tensor_util
    except ImportError as e:
        raise ImportError("scalars_from_tensorboard needs the tensorboard package: "
                          "pip install 'tensorstats[tensorboard]'") from e
    acc = ea.EventAccumulator(str(file), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    try:
        acc.Reload()
    except Exception as e:  # a damaged file: say which
        raise ValueError(f"scalars_from_tensorboard: cannot read {file}: {e}") from e
    out: dict[str, list[tuple[int, float, float]]] = {}
    tags = acc.Tags()
    for tag in tags.get("scalars", []):
        out[tag] = [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)]
    for tag in tags.get("tensors", []):  # TF2's tf.summary.scalar writes 0-d tensors
        events = acc.Tensors(tag)
        rows = []
        for e in events:
            arr = tensor_util.make_ndarray(e.tensor_proto)
            if arr.ndim != 0 or arr.dtype.kind not in "biuf":
                break
            rows.append((e.step, e.wall_time, float(arr)))
        else:
            if rows:
                out.setdefault(tag, []).extend(rows)
    return out


def scalars_from_tensorboard(path: str | os.PathLike[str]):
    """Every scalar tag of TensorBoard event files, as an ``xr.Dataset`` over ``step``.

    Parameters
    ----------
    path
        An event file (``events.out.tfevents.*``) or a folder searched
        recursively for them. Scalars written by ``SummaryWriter.add_scalar``
        (PyTorch, tensorboardX) and 0-d tensors written by TF2's
        ``tf.summary.scalar`` are read, with the ``tensorboard`` package's
        own reader (the ``tensorboard`` extra).

    Returns
    -------
    xarray.Dataset
        One float64 variable per tag over an int64 ``step`` (NaN where a tag
        was not logged). Where event files sit in several sub-folders (one per
        TensorBoard "run"), a tag is prefixed by its folder, ``train/loss``.
        A step logged twice for a tag keeps the value with the later wall
        time, with a warning.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist or holds no event file.

    Examples
    --------
    >>> import tempfile, tensorstats as ts
    >>> from torch.utils.tensorboard import SummaryWriter  # doctest: +SKIP
    >>> d = tempfile.mkdtemp()  # doctest: +SKIP
    >>> with SummaryWriter(d) as w:  # doctest: +SKIP
    ...     for step in range(3):
    ...         w.add_scalar("loss", 1.0 / (step + 1), step)
    >>> ts.scalars_from_tensorboard(d)["loss"].values.round(3).tolist()  # doctest: +SKIP
    [1.0, 0.5, 0.333]
    """
    return _dataset(_tensorboard_series(path), f"tensorboard:{Path(path)}")


def _tensorboard_series(path: str | os.PathLike[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{tag: (steps, values)}`` as logged (NaN values included)."""
    root = Path(path)
    files = _event_files(root)
    folders = {f.parent for f in files}
    rows: dict[str, list[tuple[int, float, float]]] = {}
    for file in files:
        prefix = ""
        if len(folders) > 1 and file.parent != root:
            prefix = file.parent.relative_to(root).as_posix() + "/"
        for tag, events in _read_events(file).items():
            rows.setdefault(prefix + tag, []).extend(events)
    series = {}
    for tag, events in sorted(rows.items()):
        arr = np.array(events, dtype=np.float64).reshape(-1, 3)
        steps = arr[:, 0].astype(np.int64)
        series[tag] = _last_per_step(tag, steps, arr[:, 2], arr[:, 1], str(root))
    return series


# ------------------------------------------------------------------------ CSV
def _pick(columns: Iterable[str], wanted: Iterable[str]) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    for w in wanted:
        if w in lower:
            return lower[w]
    return None


def scalars_from_csv(path: str | os.PathLike[str], *, step: str | None = None):
    """Scalars from a CSV file with a step column, as an ``xr.Dataset`` over ``step``.

    Parameters
    ----------
    path
        A CSV file with a header row: W&B's history export (``_step``),
        TensorBoard's "download CSV" (``Wall time, Step, Value``; the
        variable is then named after the file), or any table with a step
        column and numeric columns.
    step
        The step column's name; default: the first of ``step``, ``_step``,
        ``global_step``, ``iteration`` (any case).

    Returns
    -------
    xarray.Dataset
        One float64 variable per numeric column over an int64 ``step``; empty
        cells are NaN. Clock columns (``Wall time``, ``_timestamp``,
        ``_runtime``) are left out; other non-numeric columns are left out
        with a warning naming them.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If there is no step column, a step is not an integer, or a step
        repeats.

    Examples
    --------
    >>> import os, tempfile, tensorstats as ts
    >>> path = os.path.join(tempfile.mkdtemp(), "loss.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("step,loss,lr\\n0,2.3,0.1\\n10,1.7,0.1\\n20,,0.05\\n")
    >>> ds = ts.scalars_from_csv(path)
    >>> ds["step"].values.tolist(), ds["loss"].values.tolist()
    ([0, 10, 20], [2.3, 1.7, nan])
    """
    return _dataset(_csv_series(path, step=step), f"csv:{Path(path)}")


def _csv_series(path: str | os.PathLike[str], *, step: str | None = None
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{column: (steps, values)}``; empty cells left out, so only logged values remain."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"scalars_from_csv: no such file: {file}")
    try:
        frame = pd.read_csv(file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"scalars_from_csv: {file} is not a readable CSV table: {e}") from e
    step_col = step if step is not None else _pick(frame.columns, STEP_COLUMNS)
    if step_col is None or step_col not in frame.columns:
        raise ValueError(f"scalars_from_csv: {file} has no step column "
                         f"({step!r} asked)" if step else
                         f"scalars_from_csv: {file} has no step column; looked for "
                         f"{list(STEP_COLUMNS)} in {list(frame.columns)}; pass step=")
    raw = pd.to_numeric(frame[step_col], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(raw) | (raw != np.round(raw))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"scalars_from_csv: {file}: step column {step_col!r} holds "
                         f"{frame[step_col].iloc[row]!r} on data row {row + 1}, not an integer")
    steps = raw.astype(np.int64)
    values, order = np.unique(steps, return_counts=True)
    if (order > 1).any():
        raise ValueError(f"scalars_from_csv: {file}: step {int(values[order > 1][0])} appears "
                         f"{int(order[order > 1][0])} times in column {step_col!r}")
    clocks = {c for c in frame.columns if c.strip().lower() in WALL_TIME_COLUMNS}
    series, skipped = {}, []
    for col in frame.columns:
        if col == step_col or col in clocks:
            continue
        numeric = pd.to_numeric(frame[col], errors="coerce")
        if numeric.isna().sum() > frame[col].isna().sum():  # text that is not a number
            skipped.append(col)
            continue
        name = file.stem if (col.strip().lower() == "value" and len(frame.columns) <= 3) \
            else str(col)
        logged = (frame[col].notna()).to_numpy()
        series[name] = (steps[logged], numeric.to_numpy(np.float64)[logged])
    if skipped:
        warnings.warn(f"scalars_from_csv: {file}: non-numeric column(s) {skipped} left out",
                      stacklevel=2)
    return {k: (s[np.argsort(s)], v[np.argsort(s)]) for k, (s, v) in series.items()}

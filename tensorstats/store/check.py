"""Verify a run store: every committed chunk present and whole, metadata consistent,
steps increasing. Used by :func:`tensorstats.check` and ``tensorstats check``.

The check reads every chunk of every committed step (compressed chunks are
decoded), so it costs about one full read of the store. It never writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NotARunStoreError
from .backend import Backend
from .discover import read_json
from .format import STEP_VAR, check_format, chunk_key
from .names import decode_name

CODEC_NAMES = frozenset({"bytes", "blosc", "zstd"})
"""Codecs a tensorstats store may use; anything else (pickle, object codecs) is refused."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a run store.

    Attributes
    ----------
    series : str
        The series (``"feature/conv1"``, ``"scalar/loss"``, ``"probe valid:
        feature/conv1"``), or ``"store"`` for the root.
    step : int or None
        The step label concerned, where one is.
    message : str
        What is wrong, in words.
    severity : str
        ``"error"`` (data missing or unreadable) or ``"warning"`` (left by a
        crash and handled by readers, e.g. a half-committed append).
    """

    series: str
    step: int | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = self.series + (f" step {self.step}" if self.step is not None else "")
        return f"{self.severity}: {where}: {self.message}"


def series_label(key: str) -> str:
    """A readable name for a series key: ``tensors/feature/conv1`` -> ``feature/conv1``."""
    parts = [decode_name(p) if p else p for p in key.split("/")]
    if parts[0] == "tensors":
        return "/".join(parts[1:])
    if parts[0] == "scalars":
        return "scalar/" + "/".join(parts[1:])
    if parts[0] == "summaries":
        return "summary " + "/".join(parts[1:])
    if parts[0] == "ranks" and len(parts) > 2:
        return f"rank {parts[1]}: " + series_label("/".join(parts[2:]))
    if parts[0] == "probes" and len(parts) > 2:
        return f"probe {parts[1]}: " + "/".join(parts[2:])
    return "/".join(parts)


def check_store(backend: Backend) -> list[Problem]:
    """Every problem found in the store behind ``backend`` (empty: the store is sound)."""
    raw = backend.read("zarr.json")
    if raw is None:
        return [Problem("store", None, "no zarr.json at the root: not a run store")]
    try:
        check_format(json.loads(raw).get("attributes", {}), backend.url)
    except (ValueError, AttributeError) as e:
        return [Problem("store", None, str(e))]
    problems: list[Problem] = []
    for key in _series_keys(backend, ""):
        problems.extend(_check_series(backend, key))
    return problems


def _series_keys(backend: Backend, prefix: str) -> Iterator[str]:
    for name in backend.children(prefix):
        key = f"{prefix}/{name}" if prefix else name
        if backend.read(f"{key}/{STEP_VAR}/zarr.json") is not None:
            yield key
        elif backend.read(f"{key}/zarr.json") is not None:
            yield from _series_keys(backend, key)


def _check_series(backend: Backend, key: str) -> list[Problem]:
    label = series_label(key)
    try:
        group = read_json(backend, f"{key}/zarr.json")
    except NotARunStoreError as e:  # "... is not valid JSON" or "not a JSON object"
        return [Problem(label, None, f"group metadata: {e}")]
    if group is None:
        return []  # never completely created: readers ignore it
    arrays, problems = {}, []
    for name in backend.children(key):
        try:
            meta = read_json(backend, f"{key}/{name}/zarr.json")
        except NotARunStoreError as e:
            problems.append(Problem(label, None, f"array metadata: {e}"))
            continue
        if meta is None or meta.get("node_type") != "array":
            continue
        bad = _bad_metadata(meta)
        if bad:
            problems.append(Problem(label, None, f"{name}/zarr.json: {bad}"))
            continue
        arrays[name] = meta
    if problems:
        return problems
    if STEP_VAR not in arrays:
        return [Problem(label, None, f"{STEP_VAR}/zarr.json is missing")]
    growing = {n: m for n, m in arrays.items() if m["dimension_names"][:1] == [STEP_VAR]}
    lengths = {n: int(m["shape"][0]) for n, m in growing.items()}
    length = min(lengths.values())
    if len(set(lengths.values())) > 1:
        problems.append(Problem(label, None, f"arrays have lengths {lengths} (an append cut "
                                f"short by a crash); readers use {length}, and resuming with "
                                "mode='a' repairs it", "warning"))
    steps, step_problems = _steps(backend, key, arrays[STEP_VAR], length, label)
    problems.extend(step_problems)
    for name, meta in arrays.items():
        if name == STEP_VAR:
            continue
        rows = length if name in growing else None
        problems.extend(_check_chunks(backend, f"{key}/{name}", meta, rows, steps, label))
    return problems


def _bad_metadata(meta: dict[str, Any]) -> str | None:
    try:
        dtype = np.dtype(meta["data_type"])
        shape, dims = meta["shape"], meta["dimension_names"]
        chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
        codecs = [c["name"] for c in meta["codecs"]]
    except (KeyError, TypeError) as e:
        return f"incomplete array metadata ({e!r} missing)"
    if dtype.kind not in "biuf":
        return f"data type {meta['data_type']!r} is not numeric; a run store holds none"
    if set(codecs) - CODEC_NAMES:
        return f"codecs {codecs} include ones a run store never uses"
    if not (len(shape) == len(chunks) == len(dims)):
        return f"shape {shape}, chunk shape {chunks} and dims {dims} disagree in length"
    if any(not isinstance(n, int) or n < 0 for n in shape) or any(
            not isinstance(c, int) or c < 1 for c in chunks):
        return f"shape {shape} or chunk shape {chunks} is not made of valid sizes"
    return None


def _chunk_bytes(backend: Backend, key: str) -> bytes | int | None:
    """A local chunk's size (no read), or a remote chunk's bytes; None if it is missing."""
    path = backend.local_path(key)
    if path is not None:
        try:
            return os.path.getsize(path)
        except FileNotFoundError:
            return None
    return backend.read(key)


def _steps(backend: Backend, key: str, meta: dict[str, Any], length: int,
           label: str) -> tuple[np.ndarray | None, list[Problem]]:
    per = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
    size = per * 8
    out = []
    for ci in range(-(-length // per)):
        raw = backend.read(chunk_key(f"{key}/{STEP_VAR}", (ci,), _separator(meta)))
        if raw is None or len(raw) != size:
            got = "missing" if raw is None else f"{len(raw)} bytes, expected {size}"
            return None, [Problem(label, None, f"step labels chunk {ci} is {got}")]
        out.append(np.frombuffer(raw, dtype="<i8"))
    steps = np.concatenate(out)[:length] if out else np.empty(0, np.int64)
    if len(steps) > 1 and not np.all(np.diff(steps) > 0):
        at = int(np.argmin(np.diff(steps) > 0)) + 1
        return steps, [Problem(label, int(steps[at]), f"steps are not increasing "
                               f"({int(steps[at - 1])} then {int(steps[at])})")]
    return steps, []


def _separator(meta: dict[str, Any]) -> str:
    return meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")


def _check_chunks(backend: Backend, key: str, meta: dict[str, Any], rows: int | None,
                  steps: np.ndarray | None, label: str) -> list[Problem]:
    """Every chunk of rows ``0..rows-1`` (all chunks of a static array when ``rows`` is None)."""
    shape, chunks = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
    dtype = np.dtype(meta["data_type"])
    if int(np.prod(shape)) == 0:
        return []
    grid = [-(-s // c) for s, c in zip(shape, chunks, strict=True)]
    if rows is not None:
        grid[0] = -(-rows // chunks[0])
    expected = int(np.prod(chunks)) * dtype.itemsize
    decoder = _decoder([c["name"] for c in meta["codecs"]], meta)
    problems = []
    for index in np.ndindex(*grid):
        ck = chunk_key(key, index, _separator(meta))
        got = _chunk_bytes(backend, ck) if decoder is None else backend.read(ck)
        step, held = _steps_held(steps if rows is not None else None, index[0], chunks[0])
        what = f"{key.rsplit('/', 1)[-1]} chunk {ck.rsplit('/', 1)[-1]}{held}"
        if got is None:
            problems.append(Problem(label, step, f"{what} is missing"))
            continue
        size = got if isinstance(got, int) else len(got)
        if decoder is not None:
            try:
                size = len(decoder(got))
            except Exception as e:  # any decode failure means the bytes are damaged
                problems.append(Problem(label, step,
                                        f"{what} does not decode ({type(e).__name__}: {e})"))
                continue
        if size != expected:
            problems.append(Problem(label, step, f"{what} holds {size} bytes, expected {expected}"))
    return problems


def _steps_held(steps: np.ndarray | None, chunk: int, per: int) -> tuple[int | None, str]:
    """The first step label of chunk row ``chunk`` and, when a chunk packs
    several committed steps, a note naming them all (for the message)."""
    if steps is None or chunk * per >= len(steps):
        return None, ""
    held = steps[chunk * per:(chunk + 1) * per]
    note = f" (steps {held[0]}-{held[-1]})" if len(held) > 1 else ""
    return int(held[0]), note


def _decoder(names: list[str], meta: dict[str, Any]) -> Any:
    if names == ["bytes"]:
        return None
    if "blosc" in names:
        from numcodecs import Blosc

        from .codec_read import check_blosc_frame

        def decode(raw: bytes) -> bytes:
            check_blosc_frame(raw)  # numcodecs decodes a cut-short frame without an error
            return Blosc().decode(raw)

        return decode
    from numcodecs import Zstd

    return Zstd().decode

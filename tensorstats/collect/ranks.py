"""Several processes writing one run: ranks, what they share, and their start-up.

In a run of ``world_size`` processes, rank ``r`` writes its own series
(features, their gradients, inputs, local gradients, emission/absorption...)
under ``ranks/<r>/`` and nothing else; the series every rank would write
alike -- :data:`SHARED_KINDS`, the weights and the all-reduced gradients --
and the scalars are written once, by rank 0, where a single process writes
them. Rank 0 creates the store; the other ranks wait for it and join it
(without a collective operation: a Recorder may be opened on some ranks
only). See
``docs/format.md`` (``ranks/``) and ``docs/distributed.md``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from ..store.format import META_KEY, RANKS

SHARED_KINDS = ("weight", "grad")
"""Kinds that agree across ranks under data parallelism: written by rank 0 only."""

JOIN_TIMEOUT = 300.0
"""Seconds a rank other than 0 waits for rank 0 to create the store (no torch.distributed)."""


def rank_prefix(rank: int) -> str:
    return f"{RANKS}/{rank}"


def _torch_dist() -> Any:
    """``torch.distributed`` if it is imported and initialised (never imports torch)."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist
    return None


def resolve_ranks(rank: Any, world_size: Any) -> tuple[int | None, int | None]:
    """``(rank, world_size)`` as given, or from an initialised ``torch.distributed``.

    A run of one process has no rank: ``(None, None)``.
    """
    if rank is None and world_size is None:
        dist = _torch_dist()
        if dist is None or dist.get_world_size() == 1:
            return None, None
        return int(dist.get_rank()), int(dist.get_world_size())
    if rank is None or world_size is None:
        raise ValueError(f"give both rank and world_size, or neither (got rank={rank!r}, "
                         f"world_size={world_size!r})")
    for name, v in (("rank", rank), ("world_size", world_size)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {v!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if world_size == 1:
        return None, None
    return rank, world_size


def run_id() -> str | None:
    """The launcher's id of this run (``torchrun`` sets ``TORCHELASTIC_RUN_ID``), if any."""
    return os.environ.get("TORCHELASTIC_RUN_ID") or None


def wait_for_root(backend: Any, rank: int, mode: str, started: float,
                  timeout: float | None = None) -> bytes:
    """The root ``zarr.json`` of the run rank 0 is creating, once it is there.

    No collective operation is used (a Recorder may be opened on some ranks
    only). With ``mode="a"`` any store will do. Otherwise the root must be
    this run's: the same launcher run id where there is one, else created at
    most :data:`FRESH_SLACK` seconds before this rank started, so that a
    store left by an earlier run is not joined while rank 0 replaces it.
    """
    timeout = JOIN_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        raw = backend.read("zarr.json")
        if raw is not None and (mode == "a" or _is_this_run(raw, started)):
            return raw
        if time.monotonic() > deadline:
            what = "no run store" if raw is None else "only an earlier run's store"
            raise TimeoutError(f"rank {rank}: {what} at {backend.url!r} after {timeout:.0f} s; "
                               "rank 0 creates the store (open a Recorder on rank 0 too)")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


FRESH_SLACK = 600.0
"""Seconds by which rank 0 may have created the store before another rank started."""


def _is_this_run(raw: bytes, started: float) -> bool:
    import datetime as dt
    import json

    try:
        meta = json.loads(raw).get("attributes", {}).get(META_KEY, {})
        ours = run_id()
        if ours is not None and meta.get("run_id") is not None:
            return meta["run_id"] == ours
        created = dt.datetime.fromisoformat(meta["created"]).timestamp()
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return created >= started - FRESH_SLACK

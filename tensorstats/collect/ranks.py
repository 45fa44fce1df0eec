"""Several processes writing one run: ranks, what they share, and their start-up.

In a run of ``world_size`` processes, rank ``r`` writes its own series
(features, their gradients, inputs, local gradients, emission/absorption...)
under ``ranks/<r>/`` and nothing else; the series every rank would write
alike -- :data:`SHARED_KINDS`, the weights and the all-reduced gradients --
and the scalars are written once, by rank 0, where a single process writes
them. Rank 0 creates the store; the other ranks join it. See
``docs/format.md`` (``ranks/``) and ``docs/distributed.md``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from ..store.format import RANKS

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


def share_outcome(rank: int, error: BaseException | None) -> None:
    """Tell every rank whether rank 0 created the store (through torch.distributed).

    Rank 0 calls it after creating (or failing to create) the store; the others
    call it before joining, and raise if rank 0 failed. Without an initialised
    process group it does nothing (the other ranks wait for the store instead).
    """
    dist = _torch_dist()
    if dist is None:
        return
    message = [None if error is None else f"{type(error).__name__}: {error}"]
    dist.broadcast_object_list(message, src=0)
    if rank != 0 and message[0] is not None:
        raise RuntimeError(f"rank 0 could not open the store, so rank {rank} does not "
                           f"either: {message[0]}")


def wait_for_root(backend: Any, rank: int, timeout: float = JOIN_TIMEOUT) -> bytes:
    """The root ``zarr.json``, once rank 0 has written it."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        raw = backend.read("zarr.json")
        if raw is not None:
            return raw
        if time.monotonic() > deadline:
            raise TimeoutError(f"rank {rank}: no run store appeared at {backend.url!r} within "
                               f"{timeout:.0f} s; rank 0 creates it")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)

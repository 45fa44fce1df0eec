"""Sharded parameters (``DTensor``, as FSDP2's ``fully_shard`` makes them)."""

from __future__ import annotations

from typing import Any


def is_sharded(p: Any) -> bool:
    """Whether ``p`` is a DTensor (one rank holds a part of it)."""
    return hasattr(p, "placements") and hasattr(p, "to_local") and hasattr(p, "device_mesh")


def shard_of(p: Any) -> tuple[list[int], list[int]]:
    """``(global_shape, offset)`` of this rank's local shard of the DTensor ``p``."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    _, offset = compute_local_shape_and_global_offset(p.shape, p.device_mesh, p.placements)
    return list(p.shape), [int(o) for o in offset]

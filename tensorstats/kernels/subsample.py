"""Reproducible subsampling of large groups, independent of chunking.

Each element of a group gets a pseudo-random 64-bit draw from a counter-based
generator (SplitMix64) keyed by the group's key and the element's position in
the group; a group keeps its ``k`` finite elements with the smallest draws.
That is a uniform sample without replacement that depends only on the key, the
position and the values, never on how the data was chunked or batched.

Examples
--------
>>> import numpy as np
>>> x = np.arange(20.0).reshape(2, 10)
>>> keys = label_keys(0, [np.array(["a", "b"])])
>>> s = take_subsample(x, keys, 4)
>>> s.shape, bool(np.isin(s[1], x[1]).all())
((2, 4), True)
>>> bool((take_subsample(x, keys, 4) == s).all())
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 finaliser of ``z + golden``, elementwise on uint64 (wraps)."""
    z = np.asarray(z, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _label_hash(label: object) -> int:
    if isinstance(label, np.generic):
        label = label.item()
    text = f"{type(label).__name__ if isinstance(label, (str, bytes)) else 'v'}:{label!r}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def label_keys(seed: int, labels: Sequence[np.ndarray]) -> np.ndarray:
    """One uint64 key per group from ``seed`` and its labels on each kept dim.

    ``labels[i]`` holds the labels along kept dim ``i`` (its coordinate, or
    positions where it has none); the result has the broadcast shape of all
    kept dims, in order. A label hashes by value (``3`` and ``np.int32(3)``
    agree), so the same group gets the same key in any run or chunking.
    """
    with np.errstate(over="ignore"):
        key = splitmix64(np.uint64(_label_hash(int(seed))))
        for axis, lab in enumerate(labels):
            lab = np.asarray(lab)
            h = np.fromiter((_label_hash(v) for v in lab.ravel()), np.uint64, lab.size)
            shape = [1] * len(labels)
            shape[axis] = lab.size
            key = splitmix64(key ^ h.reshape(shape))
    return np.asarray(key, dtype=np.uint64)


def take_subsample(x: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """``k`` values of each row of ``x`` (G, N) chosen by the rows' ``keys`` (G,).

    Finite values are preferred: a row with fewer than ``k`` finite values
    keeps all of them and is padded with its non-finite ones (which callers
    drop). Returns shape (G, k), in each row's original order.
    """
    n = x.shape[-1]
    if n <= k:
        return x
    with np.errstate(over="ignore"):
        pos = splitmix64(np.arange(n, dtype=np.uint64))
        draws = splitmix64(keys.astype(np.uint64)[:, None] ^ pos[None, :])
    if x.dtype.kind == "f":
        draws[~np.isfinite(x)] = np.iinfo(np.uint64).max
    chosen = np.sort(np.argpartition(draws, k - 1, axis=-1)[:, :k], axis=-1)
    return np.take_along_axis(x, chosen, axis=-1)

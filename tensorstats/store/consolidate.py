"""Consolidated metadata: every node's ``zarr.json`` inlined in the root's.

A store that is closed cleanly carries its whole hierarchy in the root
``zarr.json`` (the layout zarr-python and xarray read by default), so opening
it costs one read, which matters on object stores such as S3. While a store is
being written it carries none, so a reader never sees a stale snapshot: the
writer removes it before the first append of a resumed store.
"""

from __future__ import annotations

import json
from typing import Any

from .backend import Backend
from .format import dumps

CONSOLIDATED = "consolidated_metadata"


def _walk(backend: Backend, prefix: str, out: dict[str, Any]) -> None:
    for name in backend.children(prefix):
        key = f"{prefix}/{name}" if prefix else name
        raw = backend.read(f"{key}/zarr.json")
        if raw is None:
            continue
        doc = json.loads(raw)
        out[key] = doc
        if doc.get("node_type") == "group":
            _walk(backend, key, out)


def consolidate(backend: Backend) -> None:
    """Rewrite the root ``zarr.json`` with every node's metadata inlined (atomic)."""
    root = json.loads(backend.read("zarr.json") or b"{}")
    nodes: dict[str, Any] = {}
    _walk(backend, "", nodes)
    root[CONSOLIDATED] = {"kind": "inline", "must_understand": False, "metadata": nodes}
    backend.write("zarr.json", dumps(root), replace=True)


def unconsolidate(backend: Backend) -> None:
    """Drop consolidated metadata from the root before the store changes again."""
    raw = backend.read("zarr.json")
    if raw is None:
        return
    root = json.loads(raw)
    if root.pop(CONSOLIDATED, None) is not None:
        backend.write("zarr.json", dumps(root), replace=True)

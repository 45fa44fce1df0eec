"""The first step at which a series held NaN or Inf, kept in the run's metadata.

The writer notes it as soon as that step is written, so a run that crashes
later still says where its values went bad: ``run.attrs["tensorstats"]
["first_nonfinite"]`` (for rank r of a multi-process run: the attributes of
the group ``ranks/<r>``).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np

from ..store.check import series_label
from ..store.format import META_KEY, dumps, group_metadata
from .ranks import rank_prefix


class FirstNonfinite:
    """Notes the first non-finite step once, and writes it where the run keeps it.

    ``root_attrs`` is the writer's own copy of the root group's attributes
    (rank 0 or a single process), updated and written back; a rank ``r > 0``
    writes its ``ranks/<r>`` group instead. Whatever an earlier writer of a
    resumed store noted is kept.
    """

    def __init__(self, backend: Any, rank: int | None, root_attrs: dict[str, Any]) -> None:
        self._backend = backend
        self._rank = rank
        self._root_attrs = root_attrs
        self._lock = threading.Lock()
        self.first: dict[str, Any] | None = self._stored()

    def _stored(self) -> dict[str, Any] | None:
        if self._rank in (None, 0):
            return self._root_attrs.get(META_KEY, {}).get("first_nonfinite")
        raw = self._backend.read(f"{rank_prefix(self._rank)}/zarr.json")
        if raw is None:
            return None
        return json.loads(raw).get("attributes", {}).get(META_KEY, {}).get("first_nonfinite")

    def check_row(self, step: int, key: str, row: np.ndarray) -> None:
        """Note ``row`` of the series at ``key`` if it is the first with NaN or Inf
        (one pass over each row until one is found)."""
        if row.dtype.kind == "f" and self.first is None and not np.isfinite(row).all():
            self.note(step, series_label(key), int(np.isnan(row).sum()),
                      int(np.isinf(row).sum()))

    def note(self, step: int, series: str, nan: int, inf: int) -> None:
        """Keep ``step`` if no earlier step was noted, and write it at once."""
        with self._lock:
            if self.first is not None and self.first["step"] <= step:
                return
            self.first = {"step": int(step), "series": series, "nan": nan, "inf": inf}
            if self._rank in (None, 0):
                self._root_attrs[META_KEY]["first_nonfinite"] = self.first
                doc, key = dumps(group_metadata(self._root_attrs)), "zarr.json"
            else:
                doc = dumps(group_metadata({META_KEY: {"rank": self._rank,
                                                       "first_nonfinite": self.first}}))
                key = f"{rank_prefix(self._rank)}/zarr.json"
            self._backend.write(key, doc, replace=True)

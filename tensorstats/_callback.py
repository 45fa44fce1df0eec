"""What the training-framework callbacks share: their arguments and the Recorder they own.

:mod:`tensorstats.lightning` and :mod:`tensorstats.hf` subclass their
framework's callback class and this mixin; it imports no framework.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from .collect.recorder import Recorder


class RecorderOwner:
    """Holds ``watch``'s arguments and opens, flushes or closes the callback's Recorder."""

    def _configure(self, store: str | os.PathLike[str] | Recorder, *, every: Any,
                   kinds: Iterable[str] | None, layers: Iterable[Any] | None,
                   probes: Mapping[str, Any] | None, max_elements: int | None, mode: str,
                   attrs: Mapping[str, Any] | None, watch_kwargs: Mapping[str, Any]) -> None:
        if isinstance(store, Recorder) and attrs is not None:
            raise ValueError("attrs are written by a Recorder the callback opens; with a "
                             "Recorder of yours, give them to that Recorder")
        given = {"every": every, "kinds": kinds, "layers": layers, "probes": probes,
                 "max_elements": max_elements}
        self.watch_kwargs = {**{k: v for k, v in given.items() if v is not None}, **watch_kwargs}
        self.store = store
        self.mode = mode
        self.attrs = attrs
        self.recorder: Recorder | None = None
        self.watcher: Any = None
        self._opened = 0

    def _open(self) -> Recorder:
        """The Recorder to write: yours, or one opened at ``store`` (appending after the first)."""
        if isinstance(self.store, Recorder):
            return self.store
        mode = self.mode if self._opened == 0 else "a"
        self._opened += 1
        return Recorder(self.store, mode=mode, attrs=self.attrs)

    def _watch(self, model: Any, start_step: int) -> Any:
        from .torch import watch

        self.watcher = watch(model, self.recorder, start_step=start_step, **self.watch_kwargs)
        return self.watcher

    def _unwatch(self) -> None:
        if self.watcher is not None:
            self.watcher.remove()
            self.watcher = None

    def _release(self) -> None:
        """Close the Recorder the callback opened, or flush one of yours."""
        rec, self.recorder = self.recorder, None
        if rec is None:
            return
        if rec is self.store:
            rec.flush()
        else:
            rec.close()

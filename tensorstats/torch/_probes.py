"""Probes: forward-only passes on fixed inputs at logging steps, and probe pass blocks.

:class:`Probes` is the part of the :class:`~tensorstats.torch.Watcher` that
runs the model on data other than the training batch: the ``probes`` given to
``watch`` (forward only, at each logging step) and ``with w.probe_pass(name)``
blocks (forward and backward, whenever the user asks).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..kinds import PER_LAYER_KINDS

if TYPE_CHECKING:
    from ._watcher import Watcher


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"probe names must be non-empty strings, got {name!r}")


class Probes:
    """Probe passes of a :class:`~tensorstats.torch.Watcher` (a base class of it)."""

    def _check_probes(self: Watcher, probes: Mapping[str, Any] | None) -> dict[str, Any]:
        probes = dict(probes or {})
        for name, x in probes.items():
            _check_name(name)
            if not isinstance(x, (self.torch.Tensor, tuple)):
                raise TypeError(f"probe {name!r} must be a tensor or a tuple of model "
                                f"inputs, got {type(x).__name__}")
        return probes

    @contextmanager
    def _probe_scope(self: Watcher, name: str, kinds: Iterable[str]) -> Iterator[None]:
        """Hooks capture into probe ``name`` (every pass, in order), modules in eval mode.

        What the training pass captured so far is set aside and restored after.
        PyTorch's fused fast path of ``nn.MultiheadAttention`` and
        ``nn.TransformerEncoderLayer``, taken in eval mode without gradients,
        bypasses their submodules' hooks: it is switched off inside the block.
        """
        states = {m: m.training for m in self.model.modules()}
        mha = getattr(self.torch.backends, "mha", None)
        fastpath = mha.get_fastpath_enabled() if mha is not None else None
        kinds = set(kinds)
        training_captured, training_calls = [h.captured for h in self.handlers], self._calls
        for h in self.handlers:
            h.captured = {k: {} for k in h.kinds}
        self.scope, self._scope_passes, self._calls = name, 0, {}
        self._scope_handlers = [h for h in self.handlers if set(h.kinds) & kinds]
        try:
            self.model.eval()
            if fastpath:
                mha.set_fastpath_enabled(False)
            for h in self._handlers("pass_start"):  # the weights this block uses
                h.pass_start()
            yield
        finally:
            if fastpath:
                mha.set_fastpath_enabled(True)
            self.scope, self._scope_handlers = None, self.handlers
            for h, captured in zip(self.handlers, training_captured, strict=True):
                h.captured = captured
            self._calls = training_calls
            for m, mode in states.items():  # exactly as before, module by module
                m.training = mode

    def _run_probes(self: Watcher, step: int) -> None:
        kinds = [k for k in self.kinds if k in PER_LAYER_KINDS]
        for name, x in self.probes.items():
            with self._probe_scope(name, kinds), self.torch.no_grad():
                self.model(*x) if isinstance(x, tuple) else self.model(x)
                self._record(step, probe=name)

    @contextmanager
    def probe_pass(self: Watcher, name: str, *, step: int | None = None,
                   kinds: Iterable[str] | None = None) -> Iterator[Watcher]:
        """Record the forward and backward passes run inside the block as probe ``name``.

        For evaluation passes with a backward pass, e.g. emission/absorption
        on validation images without a training step (as the seed paper
        measured them). Inside the block every forward (and backward) pass
        of the model is captured, whatever the schedule; at the end of the
        block the passes are concatenated along the sample axis and recorded
        as one step of the probe's series (``run.probe(name)``). The model is
        in eval mode inside the block, and every parameter's ``.grad`` is
        restored on exit, so the block does not disturb training. Use a
        summed loss (``reduction="sum"``) over the batches, so that each
        sample's gradient is that of its own loss and does not depend on the
        size of the batch it came in.

        Parameters
        ----------
        name : str
            The probe's name, e.g. ``"valid"``.
        step : int, optional
            The step to record at; default: the last step given to :meth:`step`.
        kinds : iterable of str, optional
            Which of the watcher's kinds to capture (default: all but
            ``grad``). ``weight`` records the parameters as the block found
            them, which offline analyses of the probe use. For many samples,
            capture only ``("weight", "emission", "absorption")``: C₁ + C₂
            numbers per sample.

        Examples
        --------
        >>> import torch, tempfile, os, tensorstats as ts
        >>> from tensorstats.torch import watch
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
        ...                             torch.nn.Linear(4 * 6 * 6, 2))
        >>> rec = ts.Recorder(os.path.join(tempfile.mkdtemp(), "run.zarr"))
        >>> w = watch(model, rec, kinds=("weight", "emission", "absorption"))
        >>> for batch in range(3):           # e.g. a validation loader
        ...     with w.probe_pass("valid", step=0):
        ...         model(torch.randn(5, 1, 8, 8)).logsumexp(1).sum().backward()  # summed
        ...     break
        >>> w.remove(); rec.close()
        >>> ts.open_run(rec.store).probe("valid")["emission", "0"].sizes["sample"]
        5
        """
        self._check_alive()
        _check_name(name)
        if self.scope is not None:
            raise RuntimeError(f"probe_pass({name!r}) inside probe pass {self.scope!r}")
        step = self._last_step if step is None else step
        if step is None:
            raise ValueError("probe_pass needs step= before the first w.step()")
        allowed = [k for k in self.kinds if k != "grad"]
        chosen = allowed if kinds is None else list(kinds)
        bad = [k for k in chosen if k not in allowed]
        if bad or not chosen:
            raise ValueError(f"probe_pass kinds {bad or chosen} are not among this watcher's "
                             f"kinds but grad, {allowed}")
        self.recorder.flush()  # the buffers of an earlier probe pass may still be queued
        was_armed = self._armed
        self._arm()
        grads = {p: p.grad for p in self.model.parameters()}
        for p in grads:
            p.grad = None
        try:
            with self._probe_scope(name, chosen):
                yield self
                self._record(step, probe=name)
        finally:
            for p, g in grads.items():
                p.grad = g
            if not was_armed:
                self._disarm()

    # ------------------------------------------------------------- lifecycle

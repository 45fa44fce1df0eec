"""One small handler per captured kind, behind one interface (as Cockpit keeps its quantities).

The :class:`~tensorstats.torch.Watcher` owns the hooks and calls every
handler that asked for a hook point:

- ``new_site(site)``: a watched module is called for the first time;
- ``pass_start()``: a training pass begins (its first forward call);
- ``forward(site, index, inputs, out)``: a watched module ran;
- ``output_grad(site, index, grad)``: the gradient of that module's output arrived;
- ``param_grad(qname, p)``: a parameter's gradient was accumulated.

``index`` numbers the passes of a probe pass block (0 for a training pass),
so that the parts of several passes are concatenated in order. A handler
keeps host copies of what it captured and writes them in ``record``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar

from ..dims import SAMPLE
from ..stats.geometry import layer_geometry
from ._local_gradients import statistics
from ._modules import Layout, Site

if TYPE_CHECKING:
    from ._watcher import Watcher

FEATURE_ONLY = frozenset({"MultiheadAttention"})
"""Module types watched by default for their output only (no emission/absorption)."""


class Capture:
    """Base class: one captured quantity, recorded as the kinds in :attr:`kinds`."""

    kinds: ClassVar[tuple[str, ...]] = ()
    hooks: ClassVar[frozenset[str]] = frozenset()
    """Which of ``pass_start``, ``forward``, ``output_grad``, ``param_grad`` it needs."""

    def __init__(self, watcher: Watcher) -> None:
        self.w = watcher
        self.captured: dict[str, dict[str, dict[int, Any]]] = {k: {} for k in self.kinds}
        """kind -> series name -> pass index -> host tensor."""

    def keep(self, kind: str, key: str, index: int, t: Any, channel_axis: int | None) -> None:
        """A host copy of ``t`` for series ``key`` of ``kind``, from pass ``index``."""
        slot = (self.w.scope or "", kind, key, index)
        self.captured[kind].setdefault(key, {})[index] = self.w.copies.grab(t, channel_axis,
                                                                            slot)

    def new_site(self, site: Site) -> None:
        """A watched module was called for the first time at ``site``."""

    def pass_start(self) -> None:
        """A training pass begins."""

    def forward(self, site: Site, index: int, inputs: Any, out: Any) -> None:
        """A watched module ran."""

    def output_grad(self, site: Site, index: int, grad: Any) -> None:
        """The gradient of a watched module's output arrived."""

    def param_grad(self, qname: str, p: Any) -> None:
        """A parameter's gradient was accumulated."""

    def before_record(self) -> None:
        """The step is about to be recorded (after every backward pass of it)."""

    def layout(self, kind: str, key: str) -> Layout:
        """How series ``key`` of ``kind`` is laid out."""
        raise NotImplementedError

    def attrs(self, kind: str, key: str) -> dict[str, Any]:
        """The attributes stored with series ``key`` of ``kind``."""
        return self.w.sites[key].attrs

    def joined(self, parts: dict[int, Any], layout: Layout) -> Any:
        """The parts of several passes, concatenated along the sample axis in pass order."""
        if len(parts) == 1:
            return next(iter(parts.values()))
        axis = layout.sample_axis
        return self.w.torch.cat([parts[i] for i in sorted(parts)],
                                dim=0 if axis is None else axis)

    def record(self, step: int, probe: str | None) -> None:
        """Write what was captured as one step of each series."""
        rec = self.w.recorder
        for kind, series in self.captured.items():
            for key, parts in series.items():
                layout = self.layout(kind, key)
                t = self.joined(parts, layout)
                rec.record(kind, key, t, step=step, channel_axis=layout.channel_axis,
                           dims=layout.dims, probe=probe, max_elements=self.max_elements,
                           copy=False, attrs=self.attrs(kind, key), **self.extra(key))

    def extra(self, key: str) -> dict[str, Any]:
        """More keyword arguments of ``Recorder.record`` for series ``key``."""
        return {}

    @property
    def max_elements(self) -> int | None:
        return self.w.max_elements

    def clear(self) -> None:
        for series in self.captured.values():
            series.clear()

    def __bool__(self) -> bool:
        return any(self.captured.values())


class ParameterCapture(Capture):
    """Base of the per-parameter kinds: channel = output axis 0, other axes unnamed.

    A sharded parameter (a ``DTensor``, as FSDP2 makes them) is recorded as
    this rank's shard with its place in the full tensor, which ``open_run``
    assembles.
    """

    def layout(self, kind: str, key: str) -> Layout:
        return Layout(0 if self.w.params[key][0].ndim else None, None)

    def attrs(self, kind: str, key: str) -> dict[str, Any]:
        return self.w.param_attrs[key]

    def extra(self, key: str) -> dict[str, Any]:
        shard = self.w.shards.get(key)
        return {} if shard is None else {"shard": shard}

    @staticmethod
    def local(t: Any) -> Any:
        """This rank's part of ``t`` (a DTensor's local shard; anything else as it is)."""
        return t.to_local() if hasattr(t, "to_local") else t


class WeightCapture(ParameterCapture):
    """``weight``: the parameter values the pass used, copied as the pass starts.

    In a probe pass block they are copied once, as the block starts.
    """

    kinds = ("weight",)
    hooks = frozenset({"pass_start"})

    def pass_start(self) -> None:
        for qname, (p, _) in self.w.params.items():
            self.keep("weight", qname, 0, self.local(p.detach()), None)


class GradCapture(ParameterCapture):
    """``grad``: each parameter's ``.grad`` as the optimiser will see it.

    Copied each time a backward pass has accumulated it, into the same
    buffer: with gradient accumulation (several backward passes before one
    ``w.step``), the last copy, the sum over the passes, is recorded. In a
    run of several processes (DDP), the gradient a parameter's hook sees is
    this rank's own, before the all-reduce; ``.grad`` is then copied when
    the step is recorded (``w.step``), after the all-reduce: the gradient
    the optimiser uses.
    """

    kinds = ("grad",)
    hooks = frozenset({"param_grad"})

    def param_grad(self, qname: str, p: Any) -> None:
        if not self.w.distributed and p.grad is not None:
            self.keep("grad", qname, 0, p.grad, None)

    def before_record(self) -> None:
        if not self.w.distributed:
            return
        # every parameter: FSDP assigns a sharded parameter's reduced .grad
        # itself, without the accumulation hook
        for qname, (p, _) in self.w.params.items():
            if p.grad is not None:
                self.keep("grad", qname, 0, self.local(p.grad), None)

class LocalGradCapture(ParameterCapture):
    """``local_grad``: this rank's own gradient, before data parallelism's all-reduce.

    Copied when a backward pass has accumulated it on this rank (with
    gradient accumulation under ``no_sync``, the local sum of the passes).
    Per rank: the spread of the ranks' ``local_grad`` around ``grad`` (their
    mean) estimates the gradient noise. In a run of one process it equals
    ``grad``.
    """

    kinds = ("local_grad",)
    hooks = frozenset({"param_grad"})

    def param_grad(self, qname: str, p: Any) -> None:
        if p.grad is not None:
            self.keep("local_grad", qname, 0, p.grad, None)


class FeatureCapture(Capture):
    """``feature``: a watched module's output (the pre-activation of a Linear/Conv)."""

    kinds = ("feature",)
    hooks = frozenset({"forward"})

    def forward(self, site: Site, index: int, inputs: Any, out: Any) -> None:
        self.keep("feature", site.key, index, out, site.output.channel_axis)

    def layout(self, kind: str, key: str) -> Layout:
        return self.w.sites[key].output


class InputCapture(Capture):
    """``input``: a watched module's (first) input."""

    kinds = ("input",)
    hooks = frozenset({"forward"})

    def forward(self, site: Site, index: int, inputs: Any, out: Any) -> None:
        if site.input is not None and isinstance(inputs[0], self.w.torch.Tensor):
            self.keep("input", site.key, index, inputs[0], site.input.channel_axis)

    def layout(self, kind: str, key: str) -> Layout:
        return self.w.sites[key].input


class FeatureGradCapture(Capture):
    """``feature_grad``: the gradient of the loss with respect to a module's output."""

    kinds = ("feature_grad",)
    hooks = frozenset({"output_grad"})

    def output_grad(self, site: Site, index: int, grad: Any) -> None:
        self.keep("feature_grad", site.key, index, grad, site.output.channel_axis)

    def layout(self, kind: str, key: str) -> Layout:
        return self.w.sites[key].output


class LocalGradientCapture(Capture):
    """``emission`` and ``absorption``: the seed paper's statistics, from weight and grad_output.

    Only C₁ + C₂ numbers per sample are kept, instead of the C₁·H·W of the
    output gradient; see :func:`tensorstats.emission_absorption`.
    """

    kinds = ("emission", "absorption")
    hooks = frozenset({"output_grad"})
    _LAYOUT = Layout(1, (SAMPLE,))

    def __init__(self, watcher: Watcher) -> None:
        super().__init__(watcher)
        self.wanted = tuple(k for k in self.kinds if k in watcher.kinds)

    def new_site(self, site: Site) -> None:
        """Find the geometry of a new site (warn once where it is unsupported).

        Attention outputs, watched by default, are left out without a warning:
        the statistics are defined for Linear and Conv layers only.
        """
        if site.attrs["module"]["type"] in FEATURE_ONLY:
            return
        try:
            site.geometry = layer_geometry(site.attrs["module"], site.key)
        except ValueError as e:
            warnings.warn(f"emission/absorption are not captured for {site.key!r}: {e}",
                          stacklevel=4)

    def output_grad(self, site: Site, index: int, grad: Any) -> None:
        geometry = site.geometry
        if geometry is None or getattr(site.module, "weight", None) is None:
            return
        input_size = tuple(site.attrs["input_shape"][1:]) if geometry.kind == "conv" else ()
        if site.output.sample_axis:  # sequence-first (token, sample, features): batch first
            grad = grad.movedim(site.output.sample_axis, 0)
        emission, absorption = statistics(grad, site.module.weight, geometry, input_size)
        for kind, value in (("emission", emission), ("absorption", absorption)):
            if kind in self.wanted:
                self.keep(kind, site.key, index, value, 1)

    def layout(self, kind: str, key: str) -> Layout:
        return self._LAYOUT

    @property
    def max_elements(self) -> int | None:
        return None  # a few numbers per sample: always kept whole


HANDLERS: dict[str, type[Capture]] = {
    "weight": WeightCapture,
    "grad": GradCapture,
    "local_grad": LocalGradCapture,
    "feature": FeatureCapture,
    "feature_grad": FeatureGradCapture,
    "input": InputCapture,
    "emission": LocalGradientCapture,
    "absorption": LocalGradientCapture,
}
"""The handler of each kind ``watch`` captures."""

"""The :class:`Watcher`: hooks on a model, a schedule, and the capture handlers they feed."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..collect.recorder import Recorder
from ..collect.schedules import Schedule, as_schedule
from ._capture import HANDLERS, Capture
from ._copy import HostCopies
from ._modules import ROOT, Site, make_site, module_metadata, parameters, select
from ._probes import Probes
from ._sequence import decide
from ._shards import is_sharded, shard_of
from ._summaries import summary_handlers

KINDS = ("weight", "grad", "feature", "feature_grad", "input", "emission", "absorption",
         "local_grad")
"""What :func:`watch` can capture."""
DEFAULT_KINDS = ("weight", "grad", "feature", "feature_grad")


class Watcher(Probes):
    """Hooks on a model that feed a :class:`~tensorstats.Recorder`; see :func:`watch`."""

    def __init__(self, model: Any, recorder: Recorder, *, every: Any = 1,
                 kinds: Iterable[str] = DEFAULT_KINDS, layers: Iterable[Any] | None = None,
                 probes: Mapping[str, Any] | None = None, max_elements: int | None = None,
                 asynchronous: bool = True, start_step: int = 0,
                 sequence_dim: Any = "auto", summarize: bool = False) -> None:
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"watch needs a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(recorder, Recorder):
            raise TypeError(f"watch needs a tensorstats.Recorder, got {type(recorder).__name__}")
        self.kinds = tuple(dict.fromkeys(kinds))
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds {bad or self.kinds} not understood; choose from {KINDS}")
        self.torch = torch
        self.model = model
        self.recorder = recorder
        self.schedule: Schedule = as_schedule(every)
        self.max_elements = max_elements
        self.modules = select(model, layers)
        """Module name -> module whose calls are watched (features, inputs, ...)."""
        self.sequence = decide(model, self.modules, sequence_dim)
        """Module name -> whether its 3-d tensors are batch-first (None: unknown)."""
        self.probes = self._check_probes(probes)
        self.params = parameters(model, None if layers is None else self.modules)
        """Qualified parameter name -> (parameter, name of the module holding it)."""
        named = {n or ROOT: m for n, m in model.named_modules()}
        self._module_meta = {name: module_metadata(named[name])
                             for name in {*self.modules, *(m for _, m in self.params.values())}}
        self.param_attrs = {q: {"module": self._module_meta[m], "module_name": m}
                            for q, (_, m) in self.params.items()}
        self.distributed = recorder.rank is not None
        """Whether this is one rank of a multi-process run (the Recorder's ``rank``)."""
        self.shards = {q: shard_of(p) for q, (p, _) in self.params.items() if is_sharded(p)}
        """Sharded parameters (DTensors): name -> (global shape, offset of this rank's shard)."""
        captured = self.kinds
        if recorder.rank not in (None, 0) and not self.shards:
            # rank 0 records the shared kinds for every rank
            captured = tuple(k for k in self.kinds if k not in recorder.shared_kinds)
        self.summarize = summarize
        table = summary_handlers() if summarize else HANDLERS
        self.handlers: list[Capture] = [cls(self) for cls in
                                        dict.fromkeys(table[k] for k in captured)]
        self.summaries: Watcher | None = None
        """The watcher of ``summaries="moments"`` on its own schedule, if any."""
        self.sites: dict[str, Site] = {}
        """Series name of each module call seen (``conv1``, ``conv1[1]``) -> its :class:`Site`."""
        self.copies = HostCopies(torch)
        self.scope: str | None = None
        """The probe whose pass is running, or None during training passes."""
        self._scope_handlers: list[Capture] = self.handlers
        self._scope_passes = 0
        self._handles: list[Any] = []
        self._armed = False
        self._removed = False
        self._passes = 0
        self._calls: dict[str, int] = {}
        self._last_step: int | None = None
        self._warned: set[str] = set()
        self._next_step = int(start_step)
        if asynchronous:
            recorder.set_asynchronous(True)
        if self.schedule(self._next_step):
            self._arm()

    def _handlers(self, hook: str) -> list[Capture]:
        return [h for h in self._scope_handlers if hook in h.hooks]

    # --------------------------------------------------------------- hooks
    def _arm(self) -> None:
        if self._armed:
            return
        self._passes = 0
        self._handles.append(self.model.register_forward_pre_hook(self._on_pass))
        if any(h.hooks & {"forward", "output_grad"} for h in self.handlers):
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._forward_hook(name)))
        if any("param_grad" in h.hooks for h in self.handlers):
            for qname, (p, _) in self.params.items():
                if p.requires_grad:
                    self._handles.append(p.register_post_accumulate_grad_hook(
                        self._grad_hook(qname)))
        self._armed = True

    def _disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._armed = False

    def _on_pass(self, module: Any, args: Any) -> None:
        self._calls.clear()
        if self.scope is not None:
            self._scope_passes += 1
            return
        self._passes += 1
        if self._passes == 1:
            # The previous logged step's tensors must be written before their
            # buffers are refilled; usually they are long done and this is free.
            # Summaries reuse no buffer: waiting at every step would only stall.
            if not self.summarize:
                self.recorder.flush()
            for h in self._handlers("pass_start"):
                h.pass_start()

    def begin_pass(self) -> None:
        """Mark the start of a training pass in which the watched model itself is not called.

        ``watch`` knows a pass begins when the model's ``forward`` is called.
        A training loop that calls its submodules directly (a Lightning
        ``training_step`` that runs ``self.encoder(...)``) calls this first;
        it does nothing at steps that are not logged.
        """
        self._check_alive()
        if self._armed:
            self._on_pass(self.model, ())

    def _site(self, key: str, name: str, module: Any, inputs: Any, out: Any) -> Site:
        site = self.sites.get(key)
        if site is None:
            site = self.sites[key] = make_site(key, name, module, self._module_meta[name],
                                               inputs, out, self.sequence[name])
            for h in self.handlers:
                h.new_site(site)
        return site

    def _forward_hook(self, name: str) -> Callable[..., None]:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if self.scope is None and self._passes != 1:
                return  # only the first pass of a logged step (gradient accumulation)
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            key = name if call == 0 else f"{name}[{call}]"
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            if not isinstance(out, self.torch.Tensor):
                self._warn(f"out-{name}", f"module {name!r} returned {type(output).__name__}, "
                                          "not a tensor; its feature is not recorded")
                return
            site = self._site(key, name, module, inputs, out)
            index = max(self._scope_passes - 1, 0)
            for h in self._handlers("forward"):
                h.forward(site, index, inputs, out)
            grad_handlers = self._handlers("output_grad")
            if grad_handlers and out.requires_grad and self.torch.is_grad_enabled():
                def grad_hook(g: Any) -> None:
                    for h in grad_handlers:
                        h.output_grad(site, index, g)

                out.register_hook(grad_hook)

        return hook

    def _grad_hook(self, qname: str) -> Callable[[Any], None]:
        def hook(p: Any) -> None:
            # every backward of the step: the last one leaves the accumulated .grad
            if self.scope is None and self._passes >= 1:
                for h in self._handlers("param_grad"):
                    h.param_grad(qname, p)

        return hook

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    # ---------------------------------------------------------------- steps
    def step(self, step: int, loss: Any = None, **scalars: Any) -> None:
        """Record what this step's pass captured (at logging steps) and the scalars.

        Call it once per training step, after ``backward()`` (and
        ``optimizer.step()`` if you like: the recorded weights are those the
        pass used). ``loss`` and any other keyword are recorded as scalars at
        every step.
        """
        self._check_alive()
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(f"w.step({step}): steps must increase; the last was "
                             f"{self._last_step}")
        if self.summaries is not None:
            self.summaries.step(step)
        for name, value in {"loss": loss, **scalars}.items():
            if value is not None:
                self.recorder.record_scalar(name, value, step=step)
        captured = any(self.handlers)
        if self._armed and self.schedule(step):
            if captured:
                self._record(step)
                self._run_probes(step)
            elif self.handlers:  # (none on a rank whose kinds are all rank 0's)
                self._warn("nothing", f"step {step} is a logging step but no forward/backward "
                                      "pass ran since the last w.step(); nothing recorded")
        elif captured:
            self._warn("predicted", f"w.step({step}) follows step {self._last_step}: the hooks "
                       f"captured the pass predicted to be step {self._next_step}, which the "
                       "schedule logs, but this step is not logged; call w.step once per step "
                       "with consecutive numbers (or set start_step)")
        self._clear()
        self.copies.forget_pending()
        self._passes = 0
        self._last_step = int(step)
        self._next_step = int(step) + 1
        if self.schedule(self._next_step):
            self._arm()
        else:
            self._disarm()

    def _clear(self) -> None:
        for h in self.handlers:
            h.clear()

    def _record(self, step: int, probe: str | None = None) -> None:
        for h in self._scope_handlers:
            h.before_record()
        self.copies.sync()
        for h in self._scope_handlers:
            h.record(step, probe)
            h.clear()

    def _check_alive(self) -> None:
        if self._removed:
            raise RuntimeError("this watcher was removed; create a new one with watch()")

    def remove(self) -> None:
        """Detach every hook; the model is left exactly as it was."""
        if self.summaries is not None:
            self.summaries.remove()
        self._disarm()
        self._removed = True

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "removed" if self._removed else ("armed" if self._armed else "idle")
        return (f"<tensorstats.torch.Watcher {len(self.modules)} modules, "
                f"{len(self.params)} parameters, kinds={self.kinds}, {state}>")

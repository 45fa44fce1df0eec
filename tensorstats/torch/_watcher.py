"""The :class:`Watcher`: hooks on a model, a schedule, and the capture handlers they feed."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from ..collect.recorder import Recorder
from ..collect.schedules import Schedule, as_schedule
from ._capture import HANDLERS, Capture, LocalGradientCapture
from ._copy import HostCopies
from ._modules import ROOT, Site, make_site, module_metadata, select

KINDS = ("weight", "grad", "feature", "feature_grad", "input", "emission", "absorption")
"""What :func:`watch` can capture."""
DEFAULT_KINDS = ("weight", "grad", "feature", "feature_grad")
PER_LAYER_KINDS = ("feature", "feature_grad", "input", "emission", "absorption")
"""Kinds recorded per module call; the others (``weight``, ``grad``) per parameter."""


class Watcher:
    """Hooks on a model that feed a :class:`~tensorstats.Recorder`; see :func:`watch`."""

    def __init__(self, model: Any, recorder: Recorder, *, every: Any = 1,
                 kinds: Iterable[str] = DEFAULT_KINDS, layers: Iterable[Any] | None = None,
                 probes: Mapping[str, Any] | None = None, max_elements: int | None = None,
                 asynchronous: bool = True, start_step: int = 0) -> None:
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
        self.probes = self._check_probes(probes)
        self._module_meta = {name: module_metadata(m) for name, m in self.modules.items()}
        self.params: dict[str, tuple[Any, str]] = {}
        """Qualified parameter name -> (parameter, name of the module holding it)."""
        seen: set[int] = set()
        for name, module in self.modules.items():
            for pname, p in module.named_parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    self.params[f"{name}.{pname}" if name != ROOT else pname] = (p, name)
        self.param_attrs = {q: {"module": self._module_meta[m], "module_name": m}
                            for q, (_, m) in self.params.items()}
        self.handlers: list[Capture] = [cls(self) for cls in
                                        dict.fromkeys(HANDLERS[k] for k in self.kinds)]
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

    def _check_probes(self, probes: Mapping[str, Any] | None) -> dict[str, Any]:
        probes = dict(probes or {})
        for name, x in probes.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"probe names must be non-empty strings, got {name!r}")
            if not isinstance(x, (self.torch.Tensor, tuple)):
                raise TypeError(f"probe {name!r} must be a tensor or a tuple of model "
                                f"inputs, got {type(x).__name__}")
        return probes

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
            self.recorder.flush()
            for h in self._handlers("pass_start"):
                h.pass_start()

    def _site(self, key: str, name: str, module: Any, inputs: Any, out: Any) -> Site:
        site = self.sites.get(key)
        if site is None:
            site = self.sites[key] = make_site(key, name, module, self._module_meta[name],
                                               inputs, out)
            for h in self.handlers:
                if isinstance(h, LocalGradientCapture):
                    h.setup(site)
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
            if self.scope is None and self._passes == 1:
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
        for name, value in {"loss": loss, **scalars}.items():
            if value is not None:
                self.recorder.record_scalar(name, value, step=step)
        captured = any(self.handlers)
        if self._armed and self.schedule(step):
            if captured:
                self._record(step)
                self._run_probes(step)
            else:
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
        self.copies.sync()
        for h in self._scope_handlers:
            h.record(step, probe)
            h.clear()

    @contextmanager
    def _probe_scope(self, name: str, kinds: Iterable[str]) -> Iterator[None]:
        """Hooks capture into probe ``name`` (every pass, in order), modules in eval mode.

        What the training pass captured so far is set aside and restored after.
        """
        states = {m: m.training for m in self.model.modules()}
        kinds = set(kinds)
        training = [h.captured for h in self.handlers], self._calls
        for h in self.handlers:
            h.captured = {k: {} for k in h.kinds}
        self.scope, self._scope_passes, self._calls = name, 0, {}
        self._scope_handlers = [h for h in self.handlers if set(h.kinds) & kinds]
        try:
            self.model.eval()
            for h in self._handlers("pass_start"):  # the weights this block uses
                h.pass_start()
            yield
        finally:
            self.scope, self._scope_handlers = None, self.handlers
            for h, captured in zip(self.handlers, training[0], strict=True):
                h.captured = captured
            self._calls = training[1]
            for m, mode in states.items():  # exactly as before, module by module
                m.training = mode

    def _run_probes(self, step: int) -> None:
        kinds = [k for k in self.kinds if k in PER_LAYER_KINDS]
        for name, x in self.probes.items():
            with self._probe_scope(name, kinds), self.torch.no_grad():
                self.model(*x) if isinstance(x, tuple) else self.model(x)
                self._record(step, probe=name)

    @contextmanager
    def probe_pass(self, name: str, *, step: int | None = None,
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
        if not isinstance(name, str) or not name:
            raise ValueError(f"probe names must be non-empty strings, got {name!r}")
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
    def _check_alive(self) -> None:
        if self._removed:
            raise RuntimeError("this watcher was removed; create a new one with watch()")

    def remove(self) -> None:
        """Detach every hook; the model is left exactly as it was."""
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

"""PyTorch adapter: record a training run with :func:`watch`.

``import tensorstats`` never imports torch; this module does, when it is used.

>>> import torch, tempfile, os, tensorstats as ts
>>> from tensorstats.torch import watch
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
>>> rec = ts.Recorder(os.path.join(tempfile.mkdtemp(), "run.zarr"))
>>> with watch(model, rec, every=2) as w:
...     for step in range(5):
...         opt.zero_grad()
...         loss = model(torch.randn(8, 4)).pow(2).mean()
...         loss.backward()
...         opt.step()
...         w.step(step, loss=loss.item())
>>> rec.close()
>>> run = ts.open_run(rec.store)
>>> run.kinds, run["feature", "0"]["step"].values.tolist()
(['feature', 'feature_grad', 'grad', 'weight'], [0, 2, 4])
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .collect.buffers import aligned_empty
from .collect.recorder import Recorder
from .collect.schedules import Schedule, as_schedule

KINDS = ("weight", "grad", "feature", "feature_grad", "input")
"""What :func:`watch` can capture."""
DEFAULT_KINDS = ("weight", "grad", "feature", "feature_grad")
ROOT = "(root)"
"""Layer name of the model itself when it is watched (PyTorch names it ``""``)."""
SAMPLE = "sample"
"""Dim name of the batch axis of recorded features and inputs."""
_SPATIAL = {1: (), 2: (), 3: ("length",), 4: ("height", "width"), 5: ("depth", "height", "width")}


def _default_types() -> tuple[type, ...]:
    import torch.nn as nn

    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def module_metadata(module: Any) -> dict[str, Any]:
    """JSON-ready description of a module: type, channels, kernel, stride, ...

    Examples
    --------
    >>> import torch
    >>> module_metadata(torch.nn.Conv2d(3, 16, 3, padding=1))["kernel_size"]
    [3, 3]
    """
    meta: dict[str, Any] = {"type": type(module).__name__}
    for attr in ("in_features", "out_features", "in_channels", "out_channels", "kernel_size",
                 "stride", "padding", "dilation", "groups", "padding_mode", "transposed"):
        if hasattr(module, attr):
            value = getattr(module, attr)
            if isinstance(value, tuple):
                value = list(value)
            if isinstance(value, (int, str, bool, list)):
                meta[attr] = value
    if hasattr(module, "bias"):
        meta["bias"] = getattr(module, "bias", None) is not None
    return meta


def _layout(module: Any, ndim: int) -> tuple[int | None, tuple[str, ...]]:
    """Channel axis and the other dims' names of a module's output (or input)."""
    if ndim == 0:
        return None, ()
    if ndim == 1:
        return 0, ()
    if hasattr(module, "in_features"):  # Linear-like: (sample, ..., features)
        return ndim - 1, (SAMPLE, *(f"dim_{i}" for i in range(1, ndim - 1)))
    return 1, (SAMPLE, *_SPATIAL.get(ndim, tuple(f"dim_{i}" for i in range(2, ndim))))


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
        self.kinds = tuple(kinds)
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise ValueError(f"kinds {bad or self.kinds} not understood; choose from {KINDS}")
        self.model = model
        self.recorder = recorder
        self.schedule: Schedule = as_schedule(every)
        self.max_elements = max_elements
        self.modules = self._select(model, layers)
        self._module_meta = {name: module_metadata(m) for name, m in self.modules.items()}
        self.params: dict[str, tuple[Any, str]] = {}  # qualified name -> (param, module name)
        seen: set[int] = set()
        for name, module in self.modules.items():
            for pname, p in module.named_parameters(recurse=False):
                if id(p) not in seen:
                    seen.add(id(p))
                    self.params[f"{name}.{pname}" if name != ROOT else pname] = (p, name)
        self.probes = dict(probes or {})
        for pname, x in self.probes.items():
            if not isinstance(pname, str) or not pname:
                raise ValueError(f"probe names must be non-empty strings, got {pname!r}")
            if not isinstance(x, (torch.Tensor, tuple)):
                raise TypeError(f"probe {pname!r} must be a tensor or a tuple of model "
                                f"inputs, got {type(x).__name__}")
        self._torch = torch
        self._handles: list[Any] = []
        self._armed = False
        self._removed = False
        self._probe: str | None = None
        self._passes = 0
        self._calls: dict[str, int] = {}
        self._captured: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
        self._layouts: dict[str, tuple[int | None, tuple[str, ...], str]] = {}
        self._events: list[Any] = []
        self._buffers: dict[tuple[str, ...], Any] = {}
        self._last_step: int | None = None
        self._warned: set[str] = set()
        self._next_step = int(start_step)
        if asynchronous:
            recorder.set_asynchronous(True)
        if self.schedule(self._next_step):
            self._arm()

    # ------------------------------------------------------------- selection
    @staticmethod
    def _select(model: Any, layers: Iterable[Any] | None) -> dict[str, Any]:
        named = {n or ROOT: m for n, m in model.named_modules()}
        if layers is None:
            types = _default_types()
            chosen = {n: m for n, m in named.items() if isinstance(m, types)}
        else:
            if isinstance(layers, (str, type)):
                layers = [layers]
            chosen = {}
            for spec in layers:
                if isinstance(spec, type):
                    hits = {n: m for n, m in named.items() if isinstance(m, spec)}
                elif isinstance(spec, str):
                    hits = {n: m for n, m in named.items()
                            if n == spec or (n != ROOT and fnmatch.fnmatchcase(n, spec))}
                else:
                    raise TypeError(f"layers takes module names, glob patterns or module types; "
                                    f"got {spec!r}")
                if not hits:
                    raise ValueError(f"layers entry {spec!r} matches no module; modules: "
                                     f"{[n for n in named if n != ROOT]}")
                chosen.update(hits)
            chosen = {n: chosen[n] for n in named if n in chosen}  # model order
        if not chosen:
            raise ValueError("no module to watch: the model has no Linear/Conv layers; "
                             "name some with layers=[...]")
        return chosen

    # --------------------------------------------------------------- hooks
    def _arm(self) -> None:
        if self._armed:
            return
        self._passes = 0
        self._handles.append(self.model.register_forward_pre_hook(self._on_pass))
        if {"feature", "feature_grad", "input"} & set(self.kinds):
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._forward_hook(name)))
        if "grad" in self.kinds:
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

    def _buffer(self, slot: tuple[str, ...], shape: Any, dtype: Any) -> Any:
        """The reusable, page-aligned host buffer for ``slot``.

        A logged pass starts by flushing the recorder (see :meth:`_on_pass`),
        so the previous logged step's buffers are written and free again:
        memory stays bounded by one logged step's tensors, and no logged step
        allocates.
        """
        torch = self._torch
        buf = self._buffers.get(slot)
        if buf is None or tuple(buf.shape) != tuple(shape) or buf.dtype != dtype:
            numel = 1
            for n in shape:
                numel *= int(n)
            itemsize = torch.empty((), dtype=dtype).element_size()
            if numel == 0:
                buf = torch.empty(shape, dtype=dtype)
            else:
                raw = aligned_empty(numel * itemsize)
                buf = torch.frombuffer(raw, dtype=dtype, count=numel).view(tuple(shape))
                buf._tensorstats_raw = raw  # keep the memory alive with the tensor
            self._buffers[slot] = buf
        return buf

    def _grab(self, t: Any, channel_axis: int | None = None,
              slot: tuple[str, ...] = ()) -> Any:
        """A private host copy of ``t`` that later in-place changes cannot touch.

        With a ``channel_axis``, the copy is laid out channel-first (the store's
        layout) and a view in ``t``'s axis order is returned, so the recorder
        needs no second, transposing copy: one copy per tensor, done by torch,
        into a buffer reused from the previous logged step (see :meth:`_buffer`).
        """
        t = t.detach()
        moved = t.movedim(channel_axis, 0) if channel_axis else t
        if t.device.type == "cpu":
            host = self._buffer(slot, moved.shape, t.dtype)
            host.copy_(moved)
        else:
            moved = moved.contiguous()
            host = self._torch.empty(moved.shape, dtype=t.dtype, device="cpu",
                                     pin_memory=t.device.type == "cuda")
            host.copy_(moved, non_blocking=True)
            if t.device.type == "cuda":
                event = self._torch.cuda.Event()
                event.record()
                self._events.append(event)
        return host.movedim(0, channel_axis) if channel_axis else host

    def _on_pass(self, module: Any, args: Any) -> None:
        if self._probe is not None:
            return
        self._passes += 1
        self._calls.clear()
        if self._passes == 1:
            # The previous logged step's tensors must be written before their
            # buffers are refilled; usually they are long done and this is free.
            self.recorder.flush()
        if self._passes == 1 and "weight" in self.kinds:  # the values this pass uses
            for qname, (p, _) in self.params.items():
                self._captured["weight"][qname] = self._grab(p, slot=("weight", qname))

    def _forward_hook(self, name: str) -> Callable[..., None]:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            if self._probe is None and self._passes != 1:
                return  # only the first pass of a logged step (gradient accumulation)
            call = self._calls.get(name, 0)
            self._calls[name] = call + 1
            key = name if call == 0 else f"{name}[{call}]"
            out = output[0] if isinstance(output, (tuple, list)) and output else output
            if not isinstance(out, self._torch.Tensor):
                self._warn(f"out-{name}", f"module {name!r} returned {type(output).__name__}, "
                                          "not a tensor; its feature is not recorded")
                return
            store = self._captured if self._probe is None else self._probe_captured
            if key not in self._layouts:
                self._layouts[key] = (*_layout(module, out.ndim), name)
            ax = self._layouts[key][0]
            probe = () if self._probe is None else ("probe", self._probe)
            if "feature" in self.kinds:
                store["feature"][key] = self._grab(out, ax, (*probe, "feature", key))
            if "input" in self.kinds and inputs and isinstance(inputs[0], self._torch.Tensor):
                if ("input", key) not in self._layouts:
                    self._layouts[("input", key)] = (*_layout(module, inputs[0].ndim), name)
                store["input"][key] = self._grab(inputs[0], self._layouts[("input", key)][0],
                                                 (*probe, "input", key))
            if ("feature_grad" in self.kinds and self._probe is None and out.requires_grad
                    and self._torch.is_grad_enabled()):
                def grad_hook(g: Any, key: str = key, ax: int | None = ax) -> None:
                    self._captured["feature_grad"][key] = self._grab(g, ax, ("feature_grad", key))
                out.register_hook(grad_hook)

        return hook

    def _grad_hook(self, qname: str) -> Callable[[Any], None]:
        def hook(p: Any) -> None:
            if self._passes == 1 and qname not in self._captured["grad"] and p.grad is not None:
                self._captured["grad"][qname] = self._grab(p.grad, slot=("grad", qname))

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
        if self._removed:
            raise RuntimeError("this watcher was removed; create a new one with watch()")
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(f"w.step({step}): steps must increase; the last was "
                             f"{self._last_step}")
        for name, value in {"loss": loss, **scalars}.items():
            if value is not None:
                self.recorder.record_scalar(name, value, step=step)
        captured = any(self._captured[k] for k in self.kinds)
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
        for store in self._captured.values():
            store.clear()
        self._events.clear()
        self._passes = 0
        self._last_step = int(step)
        self._next_step = int(step) + 1
        if self.schedule(self._next_step):
            self._arm()
        else:
            self._disarm()

    def _sync(self) -> None:
        for event in self._events:
            event.synchronize()
        self._events.clear()

    def _record(self, step: int, probe: str | None = None) -> None:
        self._sync()
        rec, me = self.recorder, self.max_elements
        store = self._captured if probe is None else self._probe_captured
        for kind in ("weight", "grad"):
            for qname, t in store.get(kind, {}).items():
                _, module_name = self.params[qname]
                rec.record(kind, qname, t, step=step, channel_axis=0 if t.ndim else None,
                           max_elements=me, copy=False,
                           attrs={"module": self._module_meta[module_name],
                                  "module_name": module_name})
        for kind in ("feature", "feature_grad", "input"):
            for key, t in store.get(kind, {}).items():
                ax, dims, module_name = self._layouts[("input", key) if kind == "input"
                                                      else key]
                rec.record(kind, key, t, step=step, channel_axis=ax, dims=dims, probe=probe,
                           max_elements=me, copy=False,
                           attrs={"module": self._module_meta[module_name],
                                  "module_name": module_name})

    def _run_probes(self, step: int) -> None:
        if not self.probes:
            return
        torch = self._torch
        states = {m: m.training for m in self.model.modules()}
        try:
            self.model.eval()
            for name, x in self.probes.items():
                self._probe = name
                self._probe_captured = {"feature": {}, "input": {}}
                self._calls.clear()
                with torch.no_grad():
                    self.model(*x) if isinstance(x, tuple) else self.model(x)
                self._record(step, probe=name)
        finally:
            self._probe = None
            for m, training in states.items():  # exactly as before, module by module
                m.training = training

    # ------------------------------------------------------------- lifecycle
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


def watch(model: Any, recorder: Recorder, *, every: Any = 1,
          kinds: Iterable[str] = DEFAULT_KINDS, layers: Iterable[Any] | None = None,
          probes: Mapping[str, Any] | None = None, max_elements: int | None = None,
          asynchronous: bool = True, start_step: int = 0) -> Watcher:
    """Record a PyTorch model's tensors during training with hooks.

    Parameters
    ----------
    model
        The ``torch.nn.Module`` being trained (its ``forward`` marks a pass).
    recorder
        Where to write. By default it is switched to asynchronous writing
        (``recorder.flush()``/``close()`` wait for the writes).
    every
        Logging schedule: an int ``n`` (every ``n`` steps), a ``step -> bool``
        callable such as :class:`~tensorstats.every`, :class:`~tensorstats.at`
        or :class:`~tensorstats.logspaced`, or a list of steps. At other steps
        no hook is installed at all.
    kinds
        Any of ``"weight"`` (parameter values the pass used), ``"grad"``
        (parameter gradients of the pass), ``"feature"`` (the module's output,
        i.e. the pre-activation of a Linear/Conv), ``"feature_grad"`` (the
        gradient of the loss w.r.t. that output) and ``"input"``.
    layers
        Which modules: names, glob patterns (``"features.*"``) or module types.
        Default: every ``Linear`` and ``Conv1d/2d/3d``.
    probes
        ``{"valid": x, ...}``: fixed inputs run through the model at each
        logging step, in eval mode under ``no_grad``, after the training
        pass is recorded; every module's train/eval flag is restored after.
        Their features are stored as probe series (``run.probe("valid")``).
    max_elements
        Per channel, keep this many fixed random elements of a larger tensor
        (plus exact moments of the full one); see ``Recorder.record``.
    asynchronous
        Switch the recorder to background writing (default).
    start_step
        The step number of the first pass.

    Returns
    -------
    Watcher
        Call ``w.step(step, loss=...)`` once per training step; ``w.remove()``
        (or leaving a ``with`` block) detaches every hook.

    Notes
    -----
    Everything recorded at a step describes one forward and backward pass:
    the weights are copied when the pass starts (before ``optimizer.step()``
    changes them), the grads when backward has accumulated them, and the
    features and their gradients as they are produced. With gradient
    accumulation, only the first pass of a logged step is recorded. A module
    called several times in a pass records its calls as ``name``,
    ``name[1]``, ``name[2]``... Feature dims are ``(step, channel, sample,
    height, width)`` for Conv2d outputs and ``(step, channel, sample)`` for
    Linear ones. Parameters are those held directly by the watched modules.
    """
    return Watcher(model, recorder, every=every, kinds=kinds, layers=layers, probes=probes,
                   max_elements=max_elements, asynchronous=asynchronous, start_step=start_step)

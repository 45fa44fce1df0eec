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

from collections.abc import Iterable, Mapping
from typing import Any

from ..collect.recorder import Recorder
from ..dims import SAMPLE
from ._modules import ROOT, module_metadata
from ._watcher import DEFAULT_KINDS, KINDS, Watcher

__all__ = ["DEFAULT_KINDS", "KINDS", "ROOT", "SAMPLE", "Watcher", "module_metadata", "watch"]


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
        gradient of the loss w.r.t. that output), ``"input"``, and
        ``"emission"``/``"absorption"``: the seed paper's channel-wise
        local-gradient statistics (see :func:`tensorstats.emission_absorption`),
        computed in the backward pass from the module's weight and output
        gradient, so only C₁ + C₂ numbers per sample are stored, not the
        gradient itself.
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
        (or leaving a ``with`` block) detaches every hook. ``with
        w.probe_pass("valid"): ...`` records evaluation passes with a backward
        pass (e.g. emission/absorption on validation images).

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

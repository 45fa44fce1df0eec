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
from ..dims import SAMPLE, TOKEN
from ._modules import ROOT, module_metadata
from ._sequence import SEQUENCE_DIMS
from ._summaries import SUMMARIZABLE
from ._watcher import DEFAULT_KINDS, KINDS, Watcher

__all__ = ["DEFAULT_KINDS", "KINDS", "ROOT", "SAMPLE", "SEQUENCE_DIMS", "TOKEN", "Watcher",
           "module_metadata", "watch"]


def watch(model: Any, recorder: Recorder, *, every: Any = 1,
          kinds: Iterable[str] = DEFAULT_KINDS, layers: Iterable[Any] | None = None,
          probes: Mapping[str, Any] | None = None, max_elements: int | None = None,
          asynchronous: bool = True, start_step: int = 0,
          sequence_dim: int | str | None = "auto", summaries: str | None = None,
          summary_every: Any = 1) -> Watcher:
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
        gradient itself. ``"local_grad"``: in data-parallel training, each
        rank's own parameter gradient before the all-reduce (``grad`` is the
        all-reduced one the optimiser uses); the ranks' spread estimates the
        gradient noise.
    layers
        Which modules: names, glob patterns (``"features.*"``) or module types.
        Default: the outputs of every ``Linear``, ``Conv1d/2d/3d`` and
        ``MultiheadAttention``, and every parameter of the model (as
        ``model.named_parameters()`` names them: embeddings, norms,
        ``self_attn.in_proj_weight``, ...). Given, the chosen modules'
        outputs and the parameters they and their submodules hold.
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
    summaries
        ``"moments"``: also record, on the schedule ``summary_every`` (default
        every step), exact per-channel moments of each of ``kinds`` (count,
        NaN/Inf counts, mean, centred power sums, min, max), computed on the
        tensor's device, a few numbers per channel instead of the tensor.
        Read with ``run.summary(kind, layer)`` and ``ts.moments``. The raw
        capture keeps its own, sparser, schedule ``every``.
    summary_every
        The schedule of the summaries, as ``every`` (default 1: every step).
    sequence_dim
        Which axis of a 3-d Linear or attention tensor holds the tokens; it
        is then named ``token``, and the batch axis ``sample``. ``"auto"``
        (default) asks the model: the nearest enclosing module with a
        ``batch_first`` attribute (or whose submodules' ``batch_first`` all
        agree), or a Hugging Face ``PreTrainedModel`` (batch-first); where
        nothing says, the axis stays ``dim_1``. ``1``: batch-first
        ``(batch, tokens, features)`` everywhere; ``0``: sequence-first
        ``(tokens, batch, features)``; ``None``: never name it.

    Returns
    -------
    Watcher
        Call ``w.step(step, loss=...)`` once per training step; ``w.remove()``
        (or leaving a ``with`` block) detaches every hook. ``with
        w.probe_pass("valid"): ...`` records evaluation passes with a backward
        pass (e.g. emission/absorption on validation images).
        ``w.begin_pass()`` marks a training pass that does not call the model
        itself (only its submodules).

    Notes
    -----
    Everything recorded at a step describes one forward and backward pass:
    the weights are copied when the pass starts (before ``optimizer.step()``
    changes them), the grads when backward has accumulated them, and the
    features and their gradients as they are produced. With gradient
    accumulation (several forward and backward passes before one
    ``w.step``), ``weight``, ``feature``, ``feature_grad``, ``input`` and
    emission/absorption come from the first pass of the logged step, and
    ``grad`` is the accumulated ``.grad`` after the last backward pass: the
    gradient the optimiser uses. A module called several times in a pass
    records its calls as ``name``, ``name[1]``, ``name[2]``... Feature dims
    are ``(step, channel, sample, height, width)`` for Conv2d outputs,
    ``(step, channel, sample)`` for Linear ones and ``(step, channel, sample,
    token)`` (or ``token, sample``) for Linear and attention outputs over
    tokens. ``nn.MultiheadAttention``'s feature is element 0 of its output
    (the attention output after ``out_proj``); see ``docs/torch.md`` for
    what fused attention hides.
    """
    if summaries not in (None, "moments"):
        raise ValueError(f"summaries must be None or 'moments', got {summaries!r}")
    kinds = tuple(kinds)
    w = Watcher(model, recorder, every=every, kinds=kinds, layers=layers, probes=probes,
                max_elements=max_elements, asynchronous=asynchronous, start_step=start_step,
                sequence_dim=sequence_dim)
    summarized = tuple(k for k in kinds if k in SUMMARIZABLE)
    if summaries is not None and summarized:
        w.summaries = Watcher(model, recorder, every=summary_every, kinds=summarized,
                              layers=layers, asynchronous=asynchronous,
                              start_step=start_step, sequence_dim=sequence_dim,
                              summarize=True)
    return w

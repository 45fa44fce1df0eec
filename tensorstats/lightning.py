"""PyTorch Lightning callback: record a ``Trainer.fit`` run with :func:`tensorstats.torch.watch`.

``import tensorstats`` never imports this module; importing it imports
Lightning (``lightning.pytorch``, or the older ``pytorch_lightning`` package
when ``lightning`` is not installed). See ``docs/callbacks.md``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from lightning.pytorch import Callback
except ModuleNotFoundError as err:  # the ``lightning`` extra is not installed
    if err.name not in ("lightning", "lightning.pytorch"):
        raise
    try:
        from pytorch_lightning import Callback
    except ModuleNotFoundError:
        raise ImportError("tensorstats.lightning needs PyTorch Lightning: "
                          "pip install 'tensorstats[lightning]'") from err

from ._callback import RecorderOwner
from .collect.recorder import Recorder

__all__ = ["TensorStatsCallback"]


def lr_scalars(optimizers: Iterable[Any]) -> dict[str, Any]:
    """The learning rate of every parameter group, named as the callbacks record them.

    ``lr`` for one optimizer with one group; ``lr/<group>`` for several groups
    (the group's ``"name"`` entry if it has one, else its index); with several
    optimizers, ``lr/<optimizer index>`` or ``lr/<optimizer index>/<group>``.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    >>> lr_scalars([torch.optim.SGD(a.parameters(), lr=0.1)])
    {'lr': 0.1}
    >>> opt = torch.optim.SGD([{"params": a.parameters()},
    ...                        {"params": b.parameters(), "lr": 0.01, "name": "head"}], lr=0.1)
    >>> lr_scalars([opt])
    {'lr/0': 0.1, 'lr/head': 0.01}
    """
    optimizers = list(optimizers)
    out: dict[str, Any] = {}
    for i, opt in enumerate(optimizers):
        groups = opt.param_groups
        for g, group in enumerate(groups):
            parts = ["lr"]
            if len(optimizers) > 1:
                parts.append(str(i))
            if len(groups) > 1:
                parts.append(str(group.get("name", g)))
            out["/".join(parts)] = group["lr"]
    return out


def _batch_loss(outputs: Any) -> Any:
    """The loss in what ``training_step`` gave back (a tensor or a ``{"loss": ...}`` mapping)."""
    if isinstance(outputs, Mapping):
        outputs = outputs.get("loss")
    if hasattr(outputs, "detach") and getattr(outputs, "numel", lambda: 0)() == 1:
        return outputs.detach()
    return None


class TensorStatsCallback(RecorderOwner, Callback):
    """Record a Lightning training run: :func:`tensorstats.torch.watch` on the LightningModule.

    Parameters
    ----------
    store : str, os.PathLike or Recorder
        Where to write: a store path or URL (a :class:`~tensorstats.Recorder`
        is opened there when fitting starts and closed when it ends), or a
        Recorder of yours (flushed, not closed, when fitting ends).
    every : int, callable or list of int, optional
        The logging schedule, as in :func:`tensorstats.torch.watch`.
    kinds : iterable of str, optional
        What to capture, as in :func:`~tensorstats.torch.watch`.
    layers : iterable, optional
        Which modules, as in :func:`~tensorstats.torch.watch`.
    probes : mapping, optional
        Fixed inputs run at logging steps, as in :func:`~tensorstats.torch.watch`.
    max_elements : int, optional
        Elements kept per channel, as in :func:`~tensorstats.torch.watch`.
    mode : str
        Mode of the Recorder opened at ``store`` (a path only); a second
        ``fit`` with the same callback appends to the store (``mode="a"``).
    attrs : mapping, optional
        Run metadata written by the Recorder opened at ``store`` (a path only).
    **watch_kwargs
        Any other keyword argument of :func:`~tensorstats.torch.watch`; every
        argument left out takes watch's default.

    Notes
    -----
    - **Steps.** One step per optimizer step, labelled with
      ``trainer.global_step`` as it is *while that step's forward and
      backward passes run*: the number of optimizer steps taken before it
      (0, 1, 2, ...), as in a hand-written ``for step in ...`` loop. After
      the step Lightning has already incremented ``trainer.global_step``.
    - **Gradient accumulation.** With ``accumulate_grad_batches=k`` the ``k``
      micro-batches of an optimizer step make one recorded step; ``watch``
      decides which pass its tensors come from (see ``docs/torch.md``).
    - **Scalars**, at every step: ``loss``, the sum over the step's
      micro-batches of the loss Lightning back-propagates (``training_step``'s
      loss divided by ``accumulate_grad_batches``), i.e. the mean
      micro-batch loss over a full accumulation window, whose gradient is the
      step's accumulated gradient; and the learning rate each optimizer step
      used (read just before it), as named by :func:`lr_scalars`.
    - **Passes.** A pass starts when the LightningModule is called
      (``self(x)`` in ``training_step``), or, if ``training_step`` calls its
      submodules directly, when the first watched module runs.
    - **Validation** during ``fit`` is not recorded: the hooks are removed
      while it runs and put back for the next training batch.
    - **Closing.** When ``fit`` ends, or fails (``on_exception``), the hooks
      are removed and the Recorder closed (yours is flushed). In a
      multi-process run only global rank 0 records.

    Examples
    --------
    >>> import os, tempfile, warnings, torch, lightning.pytorch as pl, tensorstats as ts
    >>> from tensorstats.lightning import TensorStatsCallback
    >>> class Lit(pl.LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = torch.nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.fc(x)
    ...     def training_step(self, batch, batch_idx):
    ...         return self(batch[0]).pow(2).mean()
    ...     def configure_optimizers(self):
    ...         return torch.optim.SGD(self.parameters(), lr=0.1)
    >>> data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(16, 4)),
    ...                                    batch_size=4)
    >>> path = os.path.join(tempfile.mkdtemp(), "run.zarr")
    >>> trainer = pl.Trainer(max_steps=2, accumulate_grad_batches=2, logger=False,
    ...                      enable_checkpointing=False, enable_progress_bar=False,
    ...                      enable_model_summary=False, accelerator="cpu",
    ...                      callbacks=[TensorStatsCallback(path)])
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     trainer.fit(Lit(), data)
    >>> run = ts.open_run(path)
    >>> run["weight", "fc.weight"]["step"].values.tolist(), list(run.scalars)
    ([0, 1], ['loss', 'lr'])
    """

    def __init__(self, store: str | os.PathLike[str] | Recorder, *, every: Any = None,
                 kinds: Iterable[str] | None = None, layers: Iterable[Any] | None = None,
                 probes: Mapping[str, Any] | None = None, max_elements: int | None = None,
                 mode: str = "w-", attrs: Mapping[str, Any] | None = None,
                 **watch_kwargs: Any) -> None:
        super().__init__()
        self._configure(store, every=every, kinds=kinds, layers=layers, probes=probes,
                        max_elements=max_elements, mode=mode, attrs=attrs,
                        watch_kwargs=watch_kwargs)
        self.recorder: Recorder | None = None
        """The Recorder being written (None outside ``fit``, or on ranks other than 0)."""
        self.watcher: Any = None
        """The :class:`~tensorstats.torch.Watcher` on the LightningModule (None while detached)."""
        self._module: Any = None
        self._handles: list[Any] = []
        self._in_batch = False
        self._pass_started = False
        self._reset_step()

    def _reset_step(self) -> None:
        self._step: int | None = None
        self._lrs: dict[str, Any] = {}
        self._loss: Any = None
        self._loss_missing = False

    # ------------------------------------------------------------ recorder
    def close(self) -> None:
        """Remove the hooks and close the Recorder the callback opened (flush one of yours)."""
        self._detach()
        self._module = None
        self._release()

    # ------------------------------------------------------------- watcher
    def _attach(self, start_step: int) -> None:
        self._watch(self._module, start_step)
        self._handles.append(self._module.register_forward_pre_hook(self._on_module_call))
        for module in self.watcher.modules.values():
            self._handles.append(module.register_forward_pre_hook(self._on_layer_call))

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._unwatch()

    def _on_module_call(self, module: Any, args: Any) -> None:
        self._pass_started = True  # watch's own hook on the module marks the pass

    def _on_layer_call(self, module: Any, args: Any) -> None:
        if self._in_batch and not self._pass_started:
            # training_step called the submodules without calling the LightningModule
            self._pass_started = True
            self.watcher.begin_pass()

    # --------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero:
            return
        self.close()  # left open by an earlier fit that was interrupted
        self.recorder = self._open()
        self._module = pl_module
        self._reset_step()
        self._attach(trainer.global_step)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any,
                             batch_idx: int) -> None:
        if self.recorder is None:
            return
        if self.watcher is None:  # after a validation loop
            self._attach(trainer.global_step)
        self._in_batch = True
        self._pass_started = False

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.recorder is not None and self._step is None:
            self._step = int(trainer.global_step)
            self._lrs = lr_scalars(trainer.optimizers)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.recorder is None:
            return
        self._in_batch = False
        loss = _batch_loss(outputs)
        if loss is None:
            self._loss_missing = True
        else:
            self._loss = loss if self._loss is None else self._loss + loss
        if self._step is None:
            return  # accumulating: the optimizer step comes with a later batch
        loss = None if self._loss_missing else self._loss
        self.watcher.step(self._step, loss=loss, **self._lrs)
        self._reset_step()

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._detach()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.close()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        try:
            self.close()
        except Exception as err:  # the training error is the one to see; say why too
            warnings.warn(f"TensorStatsCallback could not close the store {self.store!r} "
                          f"after {type(exception).__name__}: {err!r}", stacklevel=2)

